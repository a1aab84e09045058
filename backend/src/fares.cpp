#include "citycard/backend/fares.h"

#include <algorithm>
#include <set>

#include "citycard/backend/money.h"
#include "sql_util.h"

namespace citycard::backend {

namespace wire = citycard::wire;

namespace {

constexpr const char* kVersionKey = "param_version";
constexpr const char* kFare = "fare";
constexpr const char* kCardType = "card_type";
constexpr const char* kMerchantDiscount = "merchant_discount";

std::int64_t station_position(const wire::FareTable& t, const std::string& id, bool& found) {
  for (const wire::Station& s : t.stations()) {
    if (s.station_id() == id) {
      found = true;
      return s.position_m();
    }
  }
  found = false;
  return 0;
}

}  // namespace

Status validate_fare_table(const wire::FareTable& t, const FareOptions& o) {
  auto bad = [&](const std::string& why) {
    return Status(Errc::kInvalidArgument, "fare table " + t.table_id() + ": " + why);
  };
  if (Status s = sql::check_text("table id", t.table_id(), 64, true); !s.is_ok()) return s;
  if (t.kind() > static_cast<std::uint32_t>(FareKind::kDistance)) return bad("unknown kind");
  if (static_cast<std::size_t>(t.bands_size()) > o.bands_max ||
      static_cast<std::size_t>(t.stations_size()) > o.stations_max ||
      static_cast<std::size_t>(t.time_bands_size()) > o.time_bands_max) {
    return bad("too many bands, stations or time bands");
  }
  auto fare_ok = [&](std::int64_t f) { return f >= 0 && f <= o.fare_max_fen; };
  if (!fare_ok(t.flat_fen()) || !fare_ok(t.beyond_step_fen()) ||
      !fare_ok(t.transfer_discount_fen()) || !fare_ok(t.max_fare_fen())) {
    return bad("a fare is out of range");
  }
  if (t.kind() == static_cast<std::uint32_t>(FareKind::kDistance)) {
    if (t.bands_size() == 0) return bad("a distance table needs bands");
    if (t.stations_size() < 2) return bad("a distance table needs two stations");
    if (t.beyond_step_fen() > 0 && t.beyond_step_m() == 0) return bad("beyond step of 0 m");
  }
  std::uint32_t last = 0;
  for (int i = 0; i < t.bands_size(); ++i) {
    const wire::FareBand& b = t.bands(i);
    if ((i > 0 && b.up_to_m() <= last) || !fare_ok(b.fare_fen())) {
      return bad("bands must rise by distance and have fares in range");
    }
    last = b.up_to_m();
  }
  std::set<std::string> ids;
  for (const wire::Station& s : t.stations()) {
    if (s.station_id().empty() || s.station_id().size() > 64 ||
        !ids.insert(s.station_id()).second) {
      return bad("station ids must be 1..64 bytes and unique");
    }
  }
  for (const wire::TimeBand& b : t.time_bands()) {
    if (b.from_minute() >= b.to_minute() || b.to_minute() > 24 * 60 ||
        b.discount_bp() > kBasisPointsWhole || !fare_ok(b.fare_fen())) {
      return bad("time bands must be within the day, from < to, discount <= 10000 bp");
    }
  }
  if (t.transfer_window_s() > 24 * 3600) return bad("transfer window over a day");
  return Status::ok();
}

Result<FareQuote> quote_fare(const wire::FareTable& t,
                             const std::vector<wire::CardTypeDiscount>& card_types,
                             const Ride& ride) {
  if (ride.minute_of_day < 0 || ride.minute_of_day >= 24 * 60) {
    return Status(Errc::kInvalidArgument, "minute of day out of range");
  }
  FareQuote q;
  std::int64_t base = t.flat_fen();
  if (t.kind() == static_cast<std::uint32_t>(FareKind::kDistance)) {
    bool found_a = false, found_b = false;
    const std::int64_t a = station_position(t, ride.board_station, found_a);
    const std::int64_t b = station_position(t, ride.alight_station, found_b);
    if (!found_a || !found_b) {
      return Status(Errc::kNotFound, "fare table " + t.table_id() + " has no station " +
                                         (found_a ? ride.alight_station : ride.board_station));
    }
    q.distance_m = a > b ? a - b : b - a;
    bool banded = false;
    for (const wire::FareBand& band : t.bands()) {
      if (q.distance_m <= band.up_to_m()) {
        base = band.fare_fen();
        banded = true;
        break;
      }
    }
    if (!banded) {
      const wire::FareBand& top = t.bands(t.bands_size() - 1);
      base = top.fare_fen();
      if (t.beyond_step_m() > 0) {
        const std::int64_t beyond = q.distance_m - top.up_to_m();
        base += (beyond + t.beyond_step_m() - 1) / t.beyond_step_m() * t.beyond_step_fen();
      }
    }
  }
  for (const wire::TimeBand& band : t.time_bands()) {
    if (ride.minute_of_day >= static_cast<int>(band.from_minute()) &&
        ride.minute_of_day < static_cast<int>(band.to_minute())) {
      base = band.fare_fen() > 0 ? band.fare_fen() : after_discount(base, band.discount_bp());
      break;
    }
  }
  if (t.max_fare_fen() > 0) base = std::min(base, t.max_fare_fen());
  q.full_fen = base;
  std::int64_t fare = base;
  for (const wire::CardTypeDiscount& d : card_types) {
    if (d.card_type() == static_cast<std::uint32_t>(ride.card_type)) {
      fare = after_discount(fare, std::min<std::int64_t>(d.discount_bp(), kBasisPointsWhole));
    }
  }
  if (ride.seconds_since_last_boarding && *ride.seconds_since_last_boarding >= 0 &&
      *ride.seconds_since_last_boarding <= t.transfer_window_s() && t.transfer_window_s() > 0) {
    q.transfer = true;
    fare = std::max<std::int64_t>(0, fare - t.transfer_discount_fen());
  }
  q.fare_fen = fare;
  return q;
}

// ---- the parameter store -------------------------------------------------------------------

Result<std::uint64_t> Fares::put(const std::string& kind, const std::string& key,
                                 const std::string& body, bool removed) {
  auto v = sql::meta_int(store_, kVersionKey);
  if (!v.is_ok()) return v.status();
  const std::int64_t version = *v + 1;
  if (Status s = sql::set_meta_int(store_, kVersionKey, version); !s.is_ok()) return s;
  if (Status s = store_
                     .query("INSERT INTO params(kind, key, version, body, removed, at_us) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(kind, key) DO UPDATE "
                            "SET version = excluded.version, body = excluded.body, "
                            "removed = excluded.removed, at_us = excluded.at_us")
                     .bind(1, kind)
                     .bind(2, key)
                     .bind(3, version)
                     .bind_blob(4, ByteView(reinterpret_cast<const std::uint8_t*>(body.data()),
                                            body.size()))
                     .bind(5, std::int64_t{removed ? 1 : 0})
                     .bind(6, calendar_.now_us())
                     .run();
      !s.is_ok()) {
    return s;
  }
  return static_cast<std::uint64_t>(version);
}

Result<std::optional<std::string>> Fares::get(const std::string& kind,
                                              const std::string& key) const {
  auto q = store_.query("SELECT body FROM params WHERE kind = ?1 AND key = ?2 AND removed = 0");
  q.bind(1, kind).bind(2, key);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return std::optional<std::string>();
  const Bytes b = q.column_blob(0);
  return std::optional<std::string>(std::string(b.begin(), b.end()));
}

Result<std::uint64_t> Fares::version() const {
  auto v = sql::meta_int(store_, kVersionKey);
  if (!v.is_ok()) return v.status();
  return static_cast<std::uint64_t>(*v);
}

Result<std::uint64_t> Fares::publish_fare_table(const Session& by, const wire::FareTable& t) {
  return users_.audited(by, "publish_fare_table", t.table_id(), [&]() -> Result<std::uint64_t> {
    if (Status s = users_.require(by, {Role::kAdmin}, "publish_fare_table"); !s.is_ok()) return s;
    if (Status s = validate_fare_table(t, options_); !s.is_ok()) return s;
    auto existing = get(kFare, t.table_id());
    if (!existing.is_ok()) return existing.status();
    if (!*existing) {
      auto n =
          sql::scalar(store_, "SELECT count(*) FROM params WHERE kind = 'fare' AND removed = 0");
      if (!n.is_ok()) return n.status();
      if (static_cast<std::size_t>(*n) >= options_.tables_max) {
        return Status(Errc::kTooLarge, "fare table limit reached");
      }
    }
    return put(kFare, t.table_id(), t.SerializeAsString(), false);
  });
}

Result<std::uint64_t> Fares::withdraw_fare_table(const Session& by, const std::string& table_id) {
  return users_.audited(by, "withdraw_fare_table", table_id, [&]() -> Result<std::uint64_t> {
    if (Status s = users_.require(by, {Role::kAdmin}, "withdraw_fare_table"); !s.is_ok()) return s;
    auto existing = get(kFare, table_id);
    if (!existing.is_ok()) return existing.status();
    if (!*existing) return Status(Errc::kNotFound, "no fare table " + table_id);
    return put(kFare, table_id, "", true);
  });
}

Result<std::uint64_t> Fares::set_card_type_discount(const Session& by, protocol::CardType type,
                                                    std::uint32_t bp) {
  return users_.audited(
      by, "set_card_type_discount", protocol::card_type_name(type), [&]() -> Result<std::uint64_t> {
        if (Status s = users_.require(by, {Role::kAdmin}, "set_card_type_discount"); !s.is_ok()) {
          return s;
        }
        if (type > protocol::CardType::kStaff || bp > kBasisPointsWhole) {
          return Status(Errc::kInvalidArgument, "unknown card type or discount over 10000 bp");
        }
        wire::CardTypeDiscount d;
        d.set_card_type(static_cast<std::uint32_t>(type));
        d.set_discount_bp(bp);
        return put(kCardType, std::to_string(static_cast<int>(type)), d.SerializeAsString(), false);
      });
}

Result<std::uint64_t> Fares::set_merchant_discount(const Session& by,
                                                   const std::string& merchant_id,
                                                   const std::string& category, std::uint32_t bp) {
  return users_.audited(
      by, "set_merchant_discount", merchant_id + "/" + category, [&]() -> Result<std::uint64_t> {
        if (Status s = users_.require_merchant(
                by, merchant_id, {Role::kAdmin, Role::kMerchantOwner}, "set_merchant_discount");
            !s.is_ok()) {
          return s;
        }
        for (Status s : {sql::check_text("merchant id", merchant_id, 64, true),
                         sql::check_text("category", category, 64, false)}) {
          if (!s.is_ok()) return s;
        }
        if (merchant_id.find('/') != std::string::npos) {
          return Status(Errc::kInvalidArgument, "merchant ids with / cannot have discounts");
        }
        if (bp > kBasisPointsWhole) return Status(Errc::kInvalidArgument, "discount over 10000 bp");
        auto exists = store_.query("SELECT 1 FROM merchants WHERE merchant_id = ?1");
        exists.bind(1, merchant_id);
        auto row = exists.step();
        if (!row.is_ok()) return row.status();
        if (!*row) return Status(Errc::kNotFound, "no merchant " + merchant_id);
        wire::MerchantDiscount d;
        d.set_merchant_id(merchant_id);
        d.set_category(category);
        d.set_discount_bp(bp);
        return put(kMerchantDiscount, merchant_id + "/" + category, d.SerializeAsString(), false);
      });
}

Result<wire::FareTable> Fares::fare_table(const std::string& table_id) const {
  auto body = get(kFare, table_id);
  if (!body.is_ok()) return body.status();
  if (!*body) return Status(Errc::kNotFound, "no fare table " + table_id);
  wire::FareTable t;
  if (!t.ParseFromString(**body))
    return Status(Errc::kInternal, "stored fare table does not parse");
  return t;
}

Result<std::vector<wire::CardTypeDiscount>> Fares::card_type_discounts() const {
  auto q =
      store_.query("SELECT body FROM params WHERE kind = 'card_type' AND removed = 0 ORDER BY key");
  std::vector<wire::CardTypeDiscount> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    const Bytes b = q.column_blob(0);
    wire::CardTypeDiscount d;
    if (!d.ParseFromArray(b.data(), static_cast<int>(b.size()))) {
      return Status(Errc::kInternal, "stored card type discount does not parse");
    }
    out.push_back(std::move(d));
  }
}

Result<FareQuote> Fares::quote(const std::string& table_id, const Ride& ride) const {
  auto t = fare_table(table_id);
  if (!t.is_ok()) return t.status();
  auto types = card_type_discounts();
  if (!types.is_ok()) return types.status();
  return quote_fare(*t, *types, ride);
}

Result<std::int64_t> Fares::price(const std::string& merchant_id, const std::string& category,
                                  std::int64_t amount_fen) const {
  if (amount_fen < 0) return Status(Errc::kInvalidArgument, "negative amount");
  for (const std::string& c : {category, std::string()}) {
    auto body = get(kMerchantDiscount, merchant_id + "/" + c);
    if (!body.is_ok()) return body.status();
    if (!*body) continue;
    wire::MerchantDiscount d;
    if (!d.ParseFromString(**body))
      return Status(Errc::kInternal, "stored discount does not parse");
    return after_discount(amount_fen, d.discount_bp());
  }
  return amount_fen;
}

Result<wire::ParamsReply> Fares::page(std::uint64_t since) const {
  auto latest = version();
  if (!latest.is_ok()) return latest.status();
  wire::ParamsReply reply;
  reply.set_latest_version(*latest);
  if (since > *latest) since = 0;  // a terminal from another database: start over
  auto q = store_.query(
      "SELECT kind, key, version, body, removed FROM params WHERE version > ?1 AND "
      "(?1 > 0 OR removed = 0) ORDER BY version LIMIT ?2");
  const auto max = static_cast<std::int64_t>(options_.reply_items_max);
  // One row more than a page tells whether there is more.
  q.bind(1, static_cast<std::int64_t>(since)).bind(2, max + 1);
  std::int64_t rows = 0;
  std::uint64_t last = since;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) break;
    if (++rows > max) break;
    const std::string kind = q.column_text(0);
    last = static_cast<std::uint64_t>(q.column_int64(2));
    const Bytes b = q.column_blob(3);
    if (q.column_int64(4) != 0) {
      reply.add_removed(kind + "/" + q.column_text(1));
      continue;
    }
    const int n = static_cast<int>(b.size());
    bool ok = true;
    if (kind == kFare) {
      ok = reply.add_fares()->ParseFromArray(b.data(), n);
    } else if (kind == kCardType) {
      ok = reply.add_card_type_discounts()->ParseFromArray(b.data(), n);
    } else if (kind == kMerchantDiscount) {
      ok = reply.add_merchant_discounts()->ParseFromArray(b.data(), n);
    }
    if (!ok) return Status(Errc::kInternal, "stored parameter " + kind + " does not parse");
  }
  reply.set_more(rows > max);
  reply.set_version(reply.more() ? last : *latest);
  return reply;
}

}  // namespace citycard::backend
