// Fare policies: what a tap costs, as pure functions of a FareContext. Shared by the bus
// terminal, the metro gate and (for its tables) the backend's parameter download.
//
// A fare is computed in four steps, in this order, each optional:
//   1. base fare: flat, or by distance (a band table in stops or in metres);
//   2. time of day: the first matching band either replaces the base fare or takes a
//      percentage off it (peak / off-peak tables);
//   3. card type: a percentage off per card type (student, elder, staff; 10000 bp = free),
//      taken off the full fare;
//   4. transfer: a boarding within `window_s` of the card's previous boarding gets
//      `discount_fen` off (never below zero), or pays at most a fixed transfer fare.
// This is the backend's order (backend/include/citycard/backend/fares.h, quote_fare): terminal
// and clearing centre must charge the same fen for the same ride (scenarios fare_agreement_test).
// The "full fare" of a clearing record is the fare after steps 1 and 2 (what an adult pays
// with no transfer).
//
// Money is integer fen. Rounding rule, the backend's everywhere (money.h rate_of): half a fen of
// discount rounds UP, in the rider's favour:
//   charged = fare - floor((fare * discount_bp + 5000) / 10000).
// A fare never goes below zero.
//
// All types are plain values; every function is pure and thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/status.h"
#include "citycard/protocol/wire.h"

namespace citycard::devices {

// basis points: 10000 = 100 %.
inline constexpr std::uint32_t kBasisPointsWhole = 10'000;
// fen - floor((fen * bp + 5000) / 10000), clamped to [0, fen]; bp above 10000 counts as 10000.
std::uint32_t apply_discount_bp(std::uint32_t fen, std::uint32_t discount_bp);

// A distance table: bands by "up to and including" a distance, then a step fare beyond the last
// band, capped by max_fen. The unit (stops or metres) is the caller's.
struct DistanceBand {
  std::uint32_t up_to = 0;
  std::uint32_t fare_fen = 0;
};
struct DistanceTable {
  std::vector<DistanceBand> bands;    // ascending up_to; must not be empty
  std::uint32_t beyond_step = 0;      // past the last band: + beyond_step_fen per started step
  std::uint32_t beyond_step_fen = 0;  // (0 step: the last band's fare holds for any distance)
  std::uint32_t max_fen = 0;          // 0: no cap
  std::uint32_t fare_fen(std::uint32_t distance) const;
};

struct TimeOfDayBand {
  std::uint32_t from_minute = 0;  // minute of the day, inclusive
  std::uint32_t to_minute = 0;    // exclusive; a band may wrap midnight (from > to)
  std::uint32_t fare_fen = 0;     // > 0: replaces the base fare
  std::uint32_t discount_bp = 0;  // otherwise: off the base fare
};

struct TransferRule {
  std::uint32_t window_s = 0;                   // 0: no transfers
  std::uint32_t discount_fen = 0;               // off the fare, or
  std::optional<std::uint32_t> fixed_fare_fen;  // a fixed transfer fare (wins when set)
};

struct FarePolicy {
  enum class Base : std::uint8_t { kFlat, kDistance };
  Base base = Base::kFlat;
  std::uint32_t flat_fen = 200;
  DistanceTable distance;  // kDistance
  std::vector<TimeOfDayBand> time_of_day;
  TransferRule transfer;
  // Indexed by protocol::CardType (adult, student, elder, staff).
  std::array<std::uint32_t, 4> card_type_discount_bp{};
};

// What a fare depends on, gathered by the terminal before the purchase.
struct FareContext {
  protocol::CardType card_type = protocol::CardType::kAdult;
  std::int64_t now_epoch2000_s = 0;  // the tap's calendar time
  std::uint32_t distance = 0;        // stops or metres, per the policy's table
  // The card's previous boarding, from its 0x1E travel record (nullopt: none or unreadable).
  std::optional<std::int64_t> last_boarding_epoch2000_s;
};

struct Fare {
  std::uint32_t full_fen = 0;     // after base and time of day
  std::uint32_t charged_fen = 0;  // what the card pays
  bool transfer = false;          // step 3 applied
};

Fare quote(const FarePolicy& policy, const FareContext& context);
// The policy of a downloaded fare table (wire.proto FareTable, ParamsReply): kind 0 flat, 1
// distance in metres; time bands; transfer window and discount; max fare as the distance cap;
// card-type discounts from the reply's list. Errc::kMalformed for a negative or oversized
// amount, bands out of order, an empty distance table, an unknown kind or card type.
Result<FarePolicy> fare_policy_from_wire(
    const citycard::wire::FareTable& table,
    const google::protobuf::RepeatedPtrField<citycard::wire::CardTypeDiscount>& discounts);

// Minute of the day of a calendar time (seconds since 2000-01-01, local).
std::uint32_t minute_of_day(std::int64_t epoch2000_s);

}  // namespace citycard::devices
