// The full bus validator of issue 5 (BusValidator in bus_validator.h stays the flat-fare one):
// - driver card sign-in and sign-out: no sales unless a driver is signed in; the driver id (the
//   driver card's application serial, hex) goes into every record's `driver` field;
// - route and vehicle assignment (and, for a segmented-fare route, the stops to the terminus);
// - a pluggable FarePolicy (fare_policy.h): flat, by stops to the terminus, time of day,
//   transfer discount, card-type discount;
// - a composite purchase (8050 03 02) writing the 48-byte 0x1E travel record (sub-type 01,
//   boarding) before the DEBIT, when `composite` is on; a simple purchase otherwise.
// - The transfer window is tracked from the card's own 0x1E record (its newest one), read
//   before the purchase, so a transfer between two buses of different operators works without
//   any shared memory. Our rule: the previous record must come from another terminal (another
//   vehicle); a card tapped twice on one bus is the double-tap guard's business.
// - the sale core's power-loss-safe queue, double-tap guard, time budget and clock sign-on.
//
// Distance fares on a bus are "segmented": a rider pays, at boarding, the fare from the
// current stop to the terminus (set_stops_to_terminus), as Chinese long routes do when only
// boarding is tapped.
//
// Single-threaded. Does not own the PSAM, clock, channel or storage.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <set>
#include <string>

#include "citycard/devices/fare_policy.h"
#include "citycard/devices/sale_core.h"

namespace citycard::devices {

struct BusTerminalConfig {
  SaleCoreOptions core;
  FarePolicy fare;
  bool composite = true;
  std::array<std::uint8_t, 2> city{0x20, 0x00};
  std::array<std::uint8_t, 8> institution{};
  // Driver cards allowed to sign in; empty: any staff card (file 0x16 staff flag).
  std::set<protocol::Serial8> driver_roster;
};

class BusTerminal {
 public:
  BusTerminal(BusTerminalConfig config, Psam& psam, const sim::Clock& clock, sim::Channel& channel,
              LogStorage& storage);

  // Errc::kRejected: not a staff card, not on the roster, or another driver is signed in;
  // kTorn / kMalformed: the card could not be read.
  Status sign_in(CardLink& driver_card);
  // Only the signed-in driver's card signs out.
  Status sign_out(CardLink& driver_card);
  const std::optional<std::string>& driver() const { return driver_; }

  // `station` is the 7-byte route/stop code written into the travel record.
  void assign(std::string route, std::string vehicle, std::array<std::uint8_t, 7> station = {});
  void set_stops_to_terminus(std::uint32_t stops) { stops_to_terminus_ = stops; }
  void set_fare_policy(FarePolicy policy) { config_.fare = std::move(policy); }
  void set_blacklist(PurchaseEngine::Blacklist listed) {
    core_.engine().set_blacklist(std::move(listed));
  }

  SaleResult tap(CardLink& card);
  std::int64_t sign_on(std::int64_t server_time_us) { return core_.sign_on(server_time_us); }
  void upload() { core_.upload(); }

  const SaleCore& core() const { return core_; }
  SaleCore& core() { return core_; }
  const SaleCounters& counters() const { return core_.counters(); }

 private:
  Result<CardFacts> read_driver(CardLink& card);

  BusTerminalConfig config_;
  SaleCore core_;
  std::optional<std::string> driver_;
  std::optional<protocol::Serial8> driver_serial_;
  citycard::wire::SwipeRecord template_;
  std::array<std::uint8_t, 7> station_{};
  std::uint32_t stops_to_terminus_ = 0;
};

// The 8-byte terminal field of a travel record: the 6-byte PSAM terminal id, left-padded.
std::array<std::uint8_t, 8> travel_terminal(const protocol::TerminalId& terminal);

}  // namespace citycard::devices
