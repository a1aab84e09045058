// The sale core the issue-5 terminals share (bus terminal, metro gate, taxi module, POS): the
// PSAM and purchase engine, the power-loss-safe upload queue (persistent_queue.h), the
// terminal's drifting clock corrected at sign-on, the double-tap guard and the transaction
// time budget (terminal_guards.h). BusValidator and TerminalCore (terminal_core.h) stay as the
// simpler flat-fare validator with an in-memory queue; these terminals do not replace them.
//
// A sale is two phases on one card presence, both under one BudgetLink:
//   1. read_facts(): SELECT, READ BINARY 0x15 and 0x16 (card type), GET BALANCE, the newest
//      0x1E travel record, and optionally a 0x1A metro record — what a fare depends on;
//   2. sell(): the purchase engine (which SELECTs again: it is self-contained), composite when
//      the request carries capp records, then the record into the durable queue.
// The extra SELECT costs about 3 ms of card time; keeping the engine untouched is worth it.
//
// Single-threaded. Does not own the PSAM, the base clock, the channel or the log storage,
// which must outlive it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "citycard/devices/card_link.h"
#include "citycard/devices/fare_policy.h"
#include "citycard/devices/persistent_queue.h"
#include "citycard/devices/psam.h"
#include "citycard/devices/purchase.h"
#include "citycard/devices/sam_client.h"
#include "citycard/devices/terminal_core.h"
#include "citycard/devices/terminal_guards.h"
#include "citycard/protocol/capp.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/clock.h"
#include "citycard/sim/transport.h"

namespace citycard::devices {

// Refusals the terminal itself makes, beside the engine's Refusal.
enum class LocalRefusal : std::uint8_t {
  kNoDriver,       // bus: no driver signed in, no sales
  kDoubleTap,      // same card again within the guard's window: no debit
  kTimeBudget,     // the transaction ran out of its time budget and was aborted
  kBalanceTooLow,  // metro: balance under the entry minimum
  kWrongPin,       // POS: the card refused the PIN (63Cx) or is PIN-blocked (6983)
  kNotAuthorised,  // POS: wrong manager password; nothing to void / reverse / refund
};
const char* local_refusal_name(LocalRefusal r);

struct SaleResult {
  std::optional<Refusal> refusal;     // the engine's or the queue's
  std::optional<LocalRefusal> local;  // the terminal's own
  std::uint16_t sw = 0;
  std::string detail;
  bool recovered = false;
  Fare fare;                           // what was quoted (charged_fen is what the card paid)
  citycard::wire::SwipeRecord record;  // the queued record, when ok()
  std::int64_t duration_us = 0;        // simulated card + PSAM time of the tap
  bool ok() const { return !refusal && !local; }
};

struct CardFacts {
  CardIdentity id;
  protocol::CardType card_type = protocol::CardType::kAdult;
  bool staff = false;  // file 0x16 byte 1: a staff (driver, operator) card
  std::uint32_t balance_fen = 0;
  std::optional<protocol::TravelRecord> last_travel;
  std::optional<protocol::MetroRecord> metro;
};

struct SaleCoreOptions {
  std::string device_id;
  std::string operator_id;
  // Calendar time at base-clock zero, seconds since 2000-01-01 local (the card's calendar).
  std::int64_t calendar_origin_epoch2000_s = 0;
  DurableQueueOptions queue;
  PurchaseOptions purchase;
  TransactionBudget budget;
  std::int64_t double_tap_window_us = 10'000'000;
  double clock_drift_ppm = 0;  // the terminal's crystal; corrected at sign_on()
};

struct SaleCounters {
  std::uint64_t taps = 0;  // card reads: sign-ins and balance queries included
  std::uint64_t sales = 0;
  std::uint64_t recovered = 0;
  std::array<std::uint64_t, kRefusalCount> refusals{};
  std::array<std::uint64_t, 6> local_refusals{};
  std::uint64_t refused(Refusal r) const { return refusals[static_cast<std::size_t>(r)]; }
  std::uint64_t refused(LocalRefusal r) const {
    return local_refusals[static_cast<std::size_t>(r)];
  }
};

class SaleCore {
 public:
  SaleCore(SaleCoreOptions options, Psam& psam, const sim::Clock& base_clock, sim::Channel& channel,
           LogStorage& storage);

  // Phase 1. `metro_record_id`: also READ RECORD that 0x1A record.
  Result<CardFacts> read_facts(CardLink& card, std::optional<std::uint8_t> metro_record_id,
                               SaleResult* refusal);
  // Refuses (kDoubleTap) when this card had a sale here within the window.
  bool double_tap(const protocol::Serial8& serial);
  // Phase 2: purchase and queue the record built on `tmpl` (transfer count, full fare and the
  // quote filled in from `fare`).
  SaleResult sell(BudgetLink& card, const PurchaseRequest& request, const Fare& fare,
                  const citycard::wire::SwipeRecord& tmpl);
  // Counts and returns a refusal.
  SaleResult refuse(SaleResult r);
  SaleResult refuse_local(LocalRefusal why, std::string detail);

  // Sign-on with the server: corrects the terminal clock. Returns the correction.
  std::int64_t sign_on(std::int64_t server_time_us) { return clock_.sign_on(server_time_us); }
  const TerminalClock& clock() const { return clock_; }
  TerminalClock& clock() { return clock_; }
  std::int64_t now_epoch2000_s() const;
  protocol::DateTime7 now_datetime() const;

  void upload() { queue_.upload(); }
  const DurableUploadQueue& queue() const { return queue_; }
  PurchaseEngine& engine() { return engine_; }
  SamClient& sam() { return sam_; }
  const SaleCounters& counters() const { return counters_; }
  const SaleCoreOptions& options() const { return options_; }

 private:
  SaleCoreOptions options_;
  TerminalClock clock_;
  DirectLink psam_link_;
  SamClient sam_;
  PurchaseEngine engine_;
  DurableUploadQueue queue_;
  DoubleTapGuard guard_;
  SaleCounters counters_;
};

}  // namespace citycard::devices
