#include "citycard/protocol/purse.h"

#include <cstdio>

namespace citycard::protocol {

const char* family_name(Family f) {
  return f == Family::kJtt978 ? "jtt978" : "cjt166";
}

Bytes LogRecord::encode() const {
  Bytes out;
  out.reserve(kSize);
  put_u16be(out, counter);
  put_u24be(out, overdraft_fen);
  put_u32be(out, amount_fen);
  put_u8(out, type);
  put_bytes(out, terminal);
  put_bytes(out, datetime);
  return out;
}

std::optional<LogRecord> LogRecord::decode(ByteView b) {
  if (b.size() != kSize) return std::nullopt;
  LogRecord r;
  r.counter = get_u16be(b, 0);
  r.overdraft_fen = get_u24be(b, 2);
  r.amount_fen = get_u32be(b, 5);
  r.type = b[9];
  r.terminal = take<6>(b, 10);
  r.datetime = take<7>(b, 16);
  return r;
}

namespace {
std::uint8_t bcd(int v) { return static_cast<std::uint8_t>(((v / 10) << 4) | (v % 10)); }
int unbcd(std::uint8_t b) { return (b >> 4) * 10 + (b & 0x0f); }

// Days from 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
constexpr std::int64_t days_from_civil(int y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}
void civil_from_days(std::int64_t z, int& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<int>(yoe) + static_cast<int>(era) * 400 + (m <= 2);
}
// constexpr: other files' static initialisers may convert dates before this file's run.
constexpr std::int64_t kEpoch2000Days = days_from_civil(2000, 1, 1);
static_assert(kEpoch2000Days == 10957);
}  // namespace

DateTime7 datetime_from_epoch2000(std::int64_t seconds) {
  std::int64_t days = seconds / 86400;
  std::int64_t rem = seconds % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  int y;
  unsigned m, d;
  civil_from_days(days + kEpoch2000Days, y, m, d);
  const int hh = static_cast<int>(rem / 3600), mm = static_cast<int>(rem / 60 % 60),
            ss = static_cast<int>(rem % 60);
  return {bcd(y / 100), bcd(y % 100), bcd(static_cast<int>(m)), bcd(static_cast<int>(d)),
          bcd(hh),      bcd(mm),      bcd(ss)};
}

std::int64_t epoch2000_from_datetime(const DateTime7& dt) {
  const int y = unbcd(dt[0]) * 100 + unbcd(dt[1]);
  const std::int64_t days =
      days_from_civil(y, static_cast<unsigned>(unbcd(dt[2])), static_cast<unsigned>(unbcd(dt[3]))) -
      kEpoch2000Days;
  return days * 86400 + unbcd(dt[4]) * 3600 + unbcd(dt[5]) * 60 + unbcd(dt[6]);
}

std::string datetime_to_string(const DateTime7& dt) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02x%02x-%02x-%02x %02x:%02x:%02x", dt[0], dt[1], dt[2], dt[3],
                dt[4], dt[5], dt[6]);
  return buf;
}

std::array<std::uint8_t, 4> date_bcd(int year, int month, int day) {
  return {bcd(year / 100), bcd(year % 100), bcd(month), bcd(day)};
}

}  // namespace citycard::protocol
