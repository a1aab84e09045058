// A metro gate, entry or exit side (one class; each tap says which). Entry and exit are both
// composite purchases (STANDARDS.md: on a metro gate 80DC 01 D0 80 writes the 128-byte 0x1A
// record, then the 0x1E travel record, then 8054), so the card's metro record changes only
// together with a debit, atomically, under the card's own transaction:
//
// - Entry: the gate reads the 0x1A record; a card holding less than entry_min_balance_fen is
//   refused (kBalanceTooLow). The entry is a 0-fen composite purchase writing 0x1A (state
//   entered, line, station, device, time) and 0x1E (sub-type 01).
//   Open trip (the card says "entered" already; it left without tapping out): OUR rule, as
//   several cities do it, is to close the old trip at max_fare_fen in the same purchase that
//   writes the new entry; the record's fare_full_fen says so (max fare) and the detail names it.
// - Exit: reads 0x1A. Entered: the fare is the distance table's fare between the entry and exit
//   stations (by their positions in metres along the network), with card-type discounts from
//   the FarePolicy. Missing entry (no record, or state not entered): max_fare_fen. Overstay (in
//   the system for longer than overstay_s): max_fare_fen. Then a composite purchase writes 0x1A
//   (state exited, exit station, time, fare) and 0x1E (sub-type 02) and charges the fare.
//
// Single-threaded. Does not own the PSAM, clock, channel or storage.
#pragma once

#include <cstdint>
#include <map>

#include "citycard/devices/fare_policy.h"
#include "citycard/devices/sale_core.h"

namespace citycard::devices {

struct MetroGateConfig {
  SaleCoreOptions core;
  std::uint8_t line = 1;
  std::uint16_t station = 0;                          // this gate's station
  std::map<std::uint16_t, std::uint32_t> position_m;  // station -> metres along the network
  FarePolicy fare;                                    // base kDistance, in metres
  std::uint32_t max_fare_fen = 1000;
  std::int64_t overstay_s = 4 * 3600;
  std::uint32_t entry_min_balance_fen = 200;
  std::uint8_t metro_record_id = 0x01;
};

class MetroGate {
 public:
  MetroGate(MetroGateConfig config, Psam& psam, const sim::Clock& clock, sim::Channel& channel,
            LogStorage& storage);

  SaleResult enter(CardLink& card);
  SaleResult exit(CardLink& card);
  // The fare between two stations for a card type, before max/overstay rules (for tests and
  // fare displays). Unknown stations: max_fare_fen.
  Fare distance_fare(std::uint16_t from, std::uint16_t to, protocol::CardType type) const;

  void set_blacklist(PurchaseEngine::Blacklist listed) {
    core_.engine().set_blacklist(std::move(listed));
  }
  std::int64_t sign_on(std::int64_t server_time_us) { return core_.sign_on(server_time_us); }
  void upload() { core_.upload(); }
  const SaleCore& core() const { return core_; }
  SaleCore& core() { return core_; }
  const SaleCounters& counters() const { return core_.counters(); }

 private:
  Fare max_fare(protocol::CardType type) const;
  SaleResult sell(BudgetLink& link, const CardFacts& facts, const Fare& fare,
                  const protocol::MetroRecord& metro, std::uint8_t travel_sub_type);

  MetroGateConfig config_;
  SaleCore core_;
  citycard::wire::SwipeRecord template_;
};

}  // namespace citycard::devices
