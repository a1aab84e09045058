// The bank behind online recharges and settlement payouts, as an interface, with the
// simulated bank that virtual-time runs and tests use beside it.
//
// The gateway is asynchronous the way a payment gateway is: submit() only hands a payment
// over; its outcome arrives later as a callback that poll() returns once the clock has reached
// it. Callbacks may come late, out of order, twice, or never (then the backend queries).
// The bank keeps a statement per day: payments in, refunds out, payouts out and payouts that
// bounced; reconciliation (settlement.h) compares it with the books.
//
// SimBank is deterministic: one seed (a fork of the run's) decides every outcome and delay,
// and callbacks due at the same microsecond come in the order they were scheduled. Its fault
// knobs are named in SimBankOptions. It reads time only through the backend's Calendar.
//
// Threads: one caller at a time (the Backend's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "citycard/backend/calendar.h"
#include "citycard/protocol/status.h"
#include "citycard/sim/rng.h"

namespace citycard::backend {

struct BankPayment {
  std::string order_id;
  std::int64_t amount_fen = 0;
};

enum class BankResult : std::uint8_t { kApproved = 0, kDeclined = 1 };

struct BankCallback {
  std::string order_id;
  std::string bank_ref;  // the bank's transaction id
  BankResult result = BankResult::kApproved;
  std::int64_t amount_fen = 0;
  std::string reason;  // why declined
};

enum class BankPaymentState : std::uint8_t {
  kUnknown = 0,     // the bank never saw the order
  kProcessing = 1,  // seen, not decided yet
  kApproved = 2,
  kDeclined = 3,
};

struct BankQueryReply {
  BankPaymentState state = BankPaymentState::kUnknown;
  std::string bank_ref;
  std::int64_t amount_fen = 0;
};

enum class StatementKind : std::uint8_t {
  kPaymentIn = 0,       // a cardholder's online payment reached our account
  kRefundOut = 1,       // we refunded a payment
  kPayoutOut = 2,       // a settlement payout left our account
  kPayoutReturned = 3,  // a payout bounced (bad account): the money came back
};
const char* statement_kind_name(StatementKind k);

struct StatementLine {
  int date_yyyymmdd = 0;
  std::string bank_ref;
  StatementKind kind = StatementKind::kPaymentIn;
  std::string reference;  // order id, or the payout reference of the bank file
  std::int64_t amount_fen = 0;
  bool operator==(const StatementLine&) const = default;
};

struct PayoutFileResult {
  int lines = 0;
  int paid = 0;
  int returned = 0;
  std::int64_t paid_fen = 0;
};

class BankGateway {
 public:
  virtual ~BankGateway() = default;
  // Hands a payment over. kDuplicate for an order id the bank already has; kTooLarge when
  // its queue is full.
  virtual Status submit(const BankPayment& payment) = 0;
  // Callbacks due by now, in due order.
  virtual std::vector<BankCallback> poll() = 0;
  virtual Result<BankQueryReply> query(const std::string& order_id) = 0;
  // Refunds an approved payment in full.
  virtual Status refund(const std::string& order_id, std::int64_t amount_fen) = 0;
  // Executes a batch-payment file in the layout settlement.h documents.
  virtual Result<PayoutFileResult> execute_payout_file(const std::string& csv) = 0;
  virtual std::vector<StatementLine> statement(int date_yyyymmdd) = 0;
};

struct SimBankOptions {
  std::uint64_t seed = 1;
  std::int64_t latency_us_min = 200'000;  // submit -> decision and callback
  std::int64_t latency_us_max = 3'000'000;
  double decline_probability = 0.0;
  double lost_callback_probability = 0.0;  // decided, but the callback never comes
  double duplicate_callback_probability = 0.0;
  std::int64_t duplicate_delay_us_max = 10'000'000;
  double payout_return_probability = 0.0;  // a payout bounces (an empty account always does)
  std::size_t payments_max = 1'000'000;
  std::size_t payout_lines_max = 100'000;  // per file
};

class SimBank final : public BankGateway {
 public:
  SimBank(const Calendar& calendar, SimBankOptions options);

  Status submit(const BankPayment& payment) override;
  std::vector<BankCallback> poll() override;
  Result<BankQueryReply> query(const std::string& order_id) override;
  Status refund(const std::string& order_id, std::int64_t amount_fen) override;
  Result<PayoutFileResult> execute_payout_file(const std::string& csv) override;
  std::vector<StatementLine> statement(int date_yyyymmdd) override;

  // For tests: put a line on the statement that the books know nothing of.
  void add_statement_line(StatementLine line) { statement_.push_back(std::move(line)); }
  std::size_t callbacks_pending() const { return due_.size(); }
  const SimBankOptions& options() const { return options_; }

 private:
  struct Payment {
    std::int64_t amount_fen = 0;
    std::string bank_ref;
    BankResult result = BankResult::kApproved;
    std::int64_t decided_at_us = 0;
    bool booked = false;
    bool refunded = false;
  };
  void book_due();
  int date_at(std::int64_t at_us) const;
  std::string next_ref();

  const Calendar& calendar_;
  SimBankOptions options_;
  sim::Rng rng_;
  std::uint64_t seq_ = 0;
  std::map<std::string, Payment> payments_;
  // (due time, sequence) -> callback: same-time callbacks in scheduling order.
  std::map<std::pair<std::int64_t, std::uint64_t>, BankCallback> due_;
  std::vector<StatementLine> statement_;
};

}  // namespace citycard::backend
