// Small helpers the money side's components share over the Store. Private to the backend.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "citycard/backend/store.h"

namespace citycard::backend::sql {

template <std::size_t N>
bool copy_blob(const Bytes& b, std::array<std::uint8_t, N>& out) {
  if (b.size() != N) return false;
  std::copy(b.begin(), b.end(), out.begin());
  return true;
}

// The first column of the first row of a query with no parameters, or `fallback` when there
// is no row or it is NULL.
inline Result<std::int64_t> scalar(Store& store, std::string_view sql_text,
                                   std::int64_t fallback = 0) {
  auto q = store.query(sql_text);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row || q.column_is_null(0)) return fallback;
  return q.column_int64(0);
}

// Integer values in the meta table (counters, versions, horizons).
inline Result<std::int64_t> meta_int(Store& store, std::string_view key,
                                     std::int64_t fallback = 0) {
  auto q = store.query("SELECT value FROM meta WHERE key = ?1");
  q.bind(1, key);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return fallback;
  return static_cast<std::int64_t>(std::stoll(q.column_text(0)));
}

inline Status set_meta_int(Store& store, std::string_view key, std::int64_t value) {
  return store
      .query(
          "INSERT INTO meta(key, value) VALUES (?1, ?2) "
          "ON CONFLICT(key) DO UPDATE SET value = excluded.value")
      .bind(1, key)
      .bind(2, std::to_string(value))
      .run();
}

// Text fields a user or a terminal supplies: bounded, no control characters.
inline Status check_text(std::string_view what, const std::string& s, std::size_t max_bytes,
                         bool required) {
  if (required && s.empty()) return Status(Errc::kInvalidArgument, std::string(what) + " is empty");
  if (s.size() > max_bytes) {
    return Status(Errc::kInvalidArgument,
                  std::string(what) + " is over " + std::to_string(max_bytes) + " bytes");
  }
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return Status(Errc::kInvalidArgument, std::string(what) + " has a control character");
    }
  }
  return Status::ok();
}

}  // namespace citycard::backend::sql
