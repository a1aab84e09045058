// Small pieces every terminal kind puts around a sale:
// - BudgetLink: the transaction time budget. Wraps the card link of one transaction and
//   refuses to send another command once the transaction has used its budget, so the engine
//   aborts: it sees Errc::kTimeout from the link and treats it as a card leaving the field
//   (Refusal::kTorn). A DEBIT the budget stops is never sent, but the engine cannot tell and
//   keeps a grey record, which the card's next tap here clears (counter unchanged). Time comes from
//   the link's own durations (CardLink::elapsed_us, timing.h); a link that does not model time
//   reports 0, and then only the count limit `exchanges_max` bounds the transaction. Both limits
//   always apply.
// - DoubleTapGuard: the same card again on the same terminal within `window_us` is refused
//   without a debit (a rider who taps twice, or a card left on the reader).
// - TerminalClock: the terminal's own clock, which drifts (sim::DriftingClock), corrected to the
//   server's time at each sign-on.
//
// Single-threaded. BudgetLink does not own the inner link; TerminalClock does not own the base.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>

#include "citycard/devices/card_link.h"
#include "citycard/protocol/purse.h"
#include "citycard/sim/clock.h"

namespace citycard::devices {

struct TransactionBudget {
  // Shanghai DB31/T 239: a purchase <= 400 ms (STANDARDS.md, Timing); a Beijing metro gate
  // would set 300 ms. The card time only: the PSAM's is not counted.
  std::int64_t budget_us = 400'000;
  // A purchase is about 6 card exchanges; a composite one with records 8 to 10.
  std::uint32_t exchanges_max = 16;
};

class BudgetLink final : public CardLink {
 public:
  BudgetLink(CardLink& inner, TransactionBudget budget)
      : inner_(inner), budget_(budget), start_us_(inner.elapsed_us()) {}

  Result<protocol::Response> transceive(const protocol::Command& command) override;
  std::int64_t elapsed_us() const override { return inner_.elapsed_us(); }
  bool arm_power_cut(std::uint32_t after_page_writes) override {
    return inner_.arm_power_cut(after_page_writes);
  }

  bool exceeded() const { return exceeded_; }
  std::int64_t used_us() const { return inner_.elapsed_us() - start_us_; }
  std::uint32_t exchanges() const { return exchanges_; }

 private:
  CardLink& inner_;
  TransactionBudget budget_;
  std::int64_t start_us_;
  std::uint32_t exchanges_ = 0;
  bool exceeded_ = false;
};

class DoubleTapGuard {
 public:
  // `cards_max` bounds the memory; the oldest entries go first.
  DoubleTapGuard(std::int64_t window_us, std::size_t cards_max = 256)
      : window_us_(window_us), cards_max_(cards_max) {}
  // True when `serial` had a sale here less than window_us before `now_us`.
  bool refuses(const protocol::Serial8& serial, std::int64_t now_us);
  // A sale happened: remember it.
  void sold(const protocol::Serial8& serial, std::int64_t now_us);
  std::size_t size() const { return last_us_.size(); }

 private:
  void expire(std::int64_t now_us);
  std::int64_t window_us_;
  std::size_t cards_max_;
  std::map<protocol::Serial8, std::int64_t> last_us_;
  std::deque<std::pair<std::int64_t, protocol::Serial8>> order_;  // oldest first
};

class TerminalClock final : public sim::Clock {
 public:
  explicit TerminalClock(const sim::Clock& base, double drift_ppm = 0) : clock_(base, drift_ppm) {}
  std::int64_t now_us() const override { return clock_.now_us(); }
  // Sign-on: the server's time, as it said. Returns the correction applied (server - ours).
  std::int64_t sign_on(std::int64_t server_time_us);
  std::int64_t error_us() const { return clock_.error_us(); }
  sim::DriftingClock& drifting() { return clock_; }

 private:
  sim::DriftingClock clock_;
};

}  // namespace citycard::devices
