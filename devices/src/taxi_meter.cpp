#include "citycard/devices/taxi_meter.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "citycard/devices/fare_policy.h"

namespace citycard::devices {

void TaxiMeter::start(std::int64_t epoch2000_s) {
  running_ = true;
  start_s_ = epoch2000_s;
  distance_m_ = 0;
  waiting_s_ = 0;
}

void TaxiMeter::drive(std::uint32_t metres, std::uint32_t seconds) {
  assert(running_);
  // Slow or standing: the meter counts time. Compared as mm/s in integers.
  const bool slow =
      std::uint64_t{metres} * 1000 < std::uint64_t{tariff_.slow_speed_mm_per_s} * seconds;
  if (slow) {
    waiting_s_ += seconds;
  } else {
    distance_m_ += metres;
  }
}

bool TaxiMeter::night() const {
  const std::uint32_t m = minute_of_day(start_s_);
  const TaxiTariff& t = tariff_;
  if (t.night_from_minute <= t.night_to_minute) {
    return m >= t.night_from_minute && m < t.night_to_minute;
  }
  return m >= t.night_from_minute || m < t.night_to_minute;
}

std::uint32_t TaxiMeter::fare_fen() const {
  const TaxiTariff& t = tariff_;
  auto started_steps = [&](std::uint64_t metres) {
    return t.step_m == 0 ? 0 : (metres + t.step_m - 1) / t.step_m;
  };
  std::uint64_t fare = t.flag_fall_fen;
  if (distance_m_ > t.flag_fall_m) {
    const std::uint64_t normal_end = std::max<std::uint64_t>(t.long_distance_m, t.flag_fall_m);
    const std::uint64_t normal_m = std::min(distance_m_, normal_end) - t.flag_fall_m;
    fare += started_steps(normal_m) * t.per_step_fen;
    if (distance_m_ > normal_end)
      fare += started_steps(distance_m_ - normal_end) * t.long_per_step_fen;
  }
  if (t.waiting_step_s > 0) fare += waiting_s_ / t.waiting_step_s * t.waiting_fen;
  if (night()) fare += fare * t.night_surcharge_bp / kBasisPointsWhole;  // rounded down
  if (t.round_to_yuan) fare = (fare + 50) / 100 * 100;
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(fare, UINT32_MAX));
}

TaxiModule::TaxiModule(TaxiModuleConfig config, Psam& psam, const sim::Clock& clock,
                       sim::Channel& channel, LogStorage& storage)
    : config_(std::move(config)), core_(config_.core, psam, clock, channel, storage) {
  template_.set_route("taxi");
  template_.set_vehicle(config_.plate);
  template_.set_driver(config_.driver);
}

SaleResult TaxiModule::charge(CardLink& card, const TaxiMeter& meter) {
  BudgetLink link(card, config_.core.budget);
  SaleResult result;
  Result<CardFacts> facts = core_.read_facts(link, std::nullopt, &result);
  if (!facts) return core_.refuse(std::move(result));
  // No double-tap guard here: two fares in a row from one card (a second trip) are normal,
  // and the meter is what says a trip happened.
  Fare fare;
  fare.full_fen = fare.charged_fen = meter.fare_fen();
  return core_.sell(link, PurchaseRequest{fare.charged_fen, core_.now_datetime(), {}}, fare,
                    template_);
}

}  // namespace citycard::devices
