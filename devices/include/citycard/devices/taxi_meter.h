// The taxi module: a meter (pure) fed by a simulated trip, and the module that charges the
// meter's fare to a card at the end of the trip through the sale core.
//
// Meter rules (integer fen; the defaults are Shanghai-like, not a city's exact tariff):
// - flag fall covers the first flag_fall_m metres;
// - then per_step_fen for every STARTED step_m (the meter jumps as a step begins), and
//   long_per_step_fen per started step past long_distance_m (the empty-return surcharge);
// - a segment slower than slow_speed_mm_per_s counts as waiting time, not distance;
//   waiting_fen per COMPLETED waiting_step_s;
// - night (a trip STARTING in [night_from_minute, night_to_minute), wrapping midnight): the
//   whole fare plus night_surcharge_bp, the surcharge rounded down to whole fen;
// - round_to_yuan: the total rounded half-up to whole yuan (100 fen), as many meters print.
//
// TaxiMeter is a plain value, single-threaded. TaxiModule does not own the PSAM, clock,
// channel or storage.
#pragma once

#include <cstdint>
#include <string>

#include "citycard/devices/sale_core.h"

namespace citycard::devices {

struct TaxiTariff {
  std::uint32_t flag_fall_fen = 1400;
  std::uint32_t flag_fall_m = 3000;
  std::uint32_t per_step_fen = 250;
  std::uint32_t step_m = 1000;
  std::uint32_t long_distance_m = 15'000;
  std::uint32_t long_per_step_fen = 360;
  std::uint32_t slow_speed_mm_per_s = 3'300;  // about 12 km/h
  std::uint32_t waiting_fen = 250;
  std::uint32_t waiting_step_s = 240;
  std::uint32_t night_from_minute = 23 * 60;
  std::uint32_t night_to_minute = 5 * 60;
  std::uint32_t night_surcharge_bp = 3000;
  bool round_to_yuan = false;
};

class TaxiMeter {
 public:
  explicit TaxiMeter(TaxiTariff tariff = {}) : tariff_(tariff) {}
  // Flag down at a calendar time (seconds since 2000-01-01 local).
  void start(std::int64_t epoch2000_s);
  // One stretch of the trip: `metres` covered in `seconds`.
  void drive(std::uint32_t metres, std::uint32_t seconds);
  std::uint32_t fare_fen() const;
  std::uint64_t distance_m() const { return distance_m_; }
  std::uint64_t waiting_s() const { return waiting_s_; }
  bool running() const { return running_; }
  bool night() const;

 private:
  TaxiTariff tariff_;
  bool running_ = false;
  std::int64_t start_s_ = 0;
  std::uint64_t distance_m_ = 0;
  std::uint64_t waiting_s_ = 0;
};

struct TaxiModuleConfig {
  SaleCoreOptions core;
  std::string plate;
  std::string driver;  // the licensed driver, written into every record
};

class TaxiModule {
 public:
  TaxiModule(TaxiModuleConfig config, Psam& psam, const sim::Clock& clock, sim::Channel& channel,
             LogStorage& storage);
  // The end of the trip: charges the meter's fare. The meter is left as it was (a refused
  // card can be followed by another one, or cash).
  SaleResult charge(CardLink& card, const TaxiMeter& meter);
  void upload() { core_.upload(); }
  const SaleCore& core() const { return core_; }
  SaleCore& core() { return core_; }

 private:
  TaxiModuleConfig config_;
  SaleCore core_;
  citycard::wire::SwipeRecord template_;
};

}  // namespace citycard::devices
