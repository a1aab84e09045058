#include "citycard/devices/fare_policy.h"

#include <algorithm>
#include <cassert>
#include <string>

namespace citycard::devices {

std::uint32_t apply_discount_bp(std::uint32_t fen, std::uint32_t discount_bp) {
  const std::uint64_t bp = std::min(discount_bp, kBasisPointsWhole);
  // Half a fen of discount rounds up, in the rider's favour (the backend's rate_of, money.h).
  const std::uint64_t off = (std::uint64_t{fen} * bp + kBasisPointsWhole / 2) / kBasisPointsWhole;
  return static_cast<std::uint32_t>(fen - off);
}

std::uint32_t DistanceTable::fare_fen(std::uint32_t distance) const {
  assert(!bands.empty());
  std::uint64_t fare = 0;
  const auto band = std::find_if(bands.begin(), bands.end(),
                                 [&](const DistanceBand& b) { return distance <= b.up_to; });
  if (band != bands.end()) {
    fare = band->fare_fen;
  } else {
    fare = bands.back().fare_fen;
    if (beyond_step > 0) {
      const std::uint64_t past = distance - bands.back().up_to;
      const std::uint64_t steps = (past + beyond_step - 1) / beyond_step;  // started steps
      fare += steps * beyond_step_fen;
    }
  }
  if (max_fen > 0) fare = std::min<std::uint64_t>(fare, max_fen);
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(fare, UINT32_MAX));
}

std::uint32_t minute_of_day(std::int64_t epoch2000_s) {
  constexpr std::int64_t kDay = 86'400;
  const std::int64_t s = ((epoch2000_s % kDay) + kDay) % kDay;
  return static_cast<std::uint32_t>(s / 60);
}

namespace {

bool in_band(const TimeOfDayBand& b, std::uint32_t minute) {
  if (b.from_minute <= b.to_minute) return minute >= b.from_minute && minute < b.to_minute;
  return minute >= b.from_minute || minute < b.to_minute;  // wraps midnight
}

}  // namespace

Fare quote(const FarePolicy& policy, const FareContext& context) {
  Fare fare;
  std::uint32_t fen = policy.base == FarePolicy::Base::kFlat
                          ? policy.flat_fen
                          : policy.distance.fare_fen(context.distance);

  const std::uint32_t minute = minute_of_day(context.now_epoch2000_s);
  for (const TimeOfDayBand& b : policy.time_of_day) {
    if (!in_band(b, minute)) continue;
    fen = b.fare_fen > 0 ? b.fare_fen : apply_discount_bp(fen, b.discount_bp);
    break;
  }
  fare.full_fen = fen;

  const auto type = static_cast<std::size_t>(context.card_type);
  if (type < policy.card_type_discount_bp.size()) {
    fen = apply_discount_bp(fen, policy.card_type_discount_bp[type]);
  }

  const TransferRule& t = policy.transfer;
  if (t.window_s > 0 && context.last_boarding_epoch2000_s) {
    const std::int64_t since_s = context.now_epoch2000_s - *context.last_boarding_epoch2000_s;
    // A record from the future (a terminal clock ahead) is not a transfer.
    if (since_s >= 0 && since_s <= t.window_s) {
      fare.transfer = true;
      fen =
          t.fixed_fare_fen ? std::min(*t.fixed_fare_fen, fen) : fen - std::min(fen, t.discount_fen);
    }
  }
  fare.charged_fen = fen;
  return fare;
}

namespace {

bool fen32(std::int64_t fen, std::uint32_t* out) {
  if (fen < 0 || fen > std::int64_t{UINT32_MAX}) return false;
  *out = static_cast<std::uint32_t>(fen);
  return true;
}

}  // namespace

Result<FarePolicy> fare_policy_from_wire(
    const citycard::wire::FareTable& table,
    const google::protobuf::RepeatedPtrField<citycard::wire::CardTypeDiscount>& discounts) {
  auto bad = [&](const std::string& why) {
    return Result<FarePolicy>(Errc::kMalformed, "fare table " + table.table_id() + ": " + why);
  };
  FarePolicy p;
  if (table.kind() == 0) {
    p.base = FarePolicy::Base::kFlat;
    if (!fen32(table.flat_fen(), &p.flat_fen)) return bad("flat fare");
  } else if (table.kind() == 1) {
    p.base = FarePolicy::Base::kDistance;
    if (table.bands().empty()) return bad("no distance bands");
    for (const auto& b : table.bands()) {
      DistanceBand band{b.up_to_m(), 0};
      if (!fen32(b.fare_fen(), &band.fare_fen)) return bad("band fare");
      if (!p.distance.bands.empty() && band.up_to <= p.distance.bands.back().up_to) {
        return bad("bands out of order");
      }
      p.distance.bands.push_back(band);
    }
    p.distance.beyond_step = table.beyond_step_m();
    if (!fen32(table.beyond_step_fen(), &p.distance.beyond_step_fen)) return bad("step fare");
    if (!fen32(table.max_fare_fen(), &p.distance.max_fen)) return bad("max fare");
  } else {
    return bad("unknown kind " + std::to_string(table.kind()));
  }
  for (const auto& t : table.time_bands()) {
    TimeOfDayBand band{t.from_minute(), t.to_minute(), 0, t.discount_bp()};
    if (band.from_minute >= 24 * 60 || band.to_minute > 24 * 60) return bad("time band");
    if (!fen32(t.fare_fen(), &band.fare_fen)) return bad("time band fare");
    p.time_of_day.push_back(band);
  }
  p.transfer.window_s = table.transfer_window_s();
  if (!fen32(table.transfer_discount_fen(), &p.transfer.discount_fen)) return bad("transfer");
  for (const auto& d : discounts) {
    if (d.card_type() >= p.card_type_discount_bp.size()) return bad("card type");
    p.card_type_discount_bp[d.card_type()] = std::min(d.discount_bp(), kBasisPointsWhole);
  }
  return p;
}

}  // namespace citycard::devices
