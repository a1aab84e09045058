// Settlement (清分清算, 结算管理): what each merchant is owed for a period, reviewed and
// approved by an operator, paid through a bank batch-payment file, and reconciled against the
// bank's statement and the terminals' own batch totals.
//
// Cycles: each merchant settles daily, weekly (Monday..Sunday) or monthly (calendar month),
// from its start date. A period is due once its last day is before today (the swipes of a
// settlement day are complete when the day is over: ingest dates every swipe with the day it
// arrived). prepare() makes one draft batch holding a line for every due period of every
// merchant (at most SettlementOptions::lines_max; more_due says there are more) and a line for
// every deployer with a share to be paid. While a draft exists no other is made.
//
// A merchant line, all integer fen (rate_of() in money.h rounds half up; fees are computed on
// the line's totals, never per swipe):
//   gross       its swipes in the period (txn_count of them)
//   qr          its QR payments in the period (qr_count of them; qr.h, held in qr_payable)
//   fee         rate_of(gross + qr, txn_fee_bp)
//   deployer    rate_of(fee, deployer_share_bp), to its terminal deployer
//   commission  rate_of(recharge_fen, recharge_fee_bp): paid to it for the POS recharges it
//               sold that were loaded in the period
//   redeemed    points members redeemed for gifts there
//   points cost post-paid points it awarded, as far as the payout covers them (the rest waits
//               for the next period)
//   refunds     POS refunds and voids made up to the period's end (pos_refund.h), oldest
//               first, as far as the payout covers them (the rest waits for the next period)
//   net         gross + qr - fee + commission + redeemed - refunds - points cost (never
//               negative)
// approve() posts each line: Dr payable:<merchant> gross - refunds (a refund was debited to
// the payable when it was made), Dr qr_payable:<merchant> qr, Dr expense:commission, Dr
// points_redeemed_due / Cr fee_income (fee - deployer), Cr deployer_payable:<deployer>,
// Cr receivable:points, Cr bank_clearing net; and a deployer line Dr deployer_payable / Cr
// bank_clearing. The approver must be another user than the preparer (four eyes); a batch is
// approved once (kRejected after). Before approving, the figures are computed again; if they
// moved, the approval is refused.
//
// write_bank_file() (approved batches only; a draft is kRejected) writes the payouts, one per
// line with a positive net that is not paid yet, in this layout (UTF-8, '\n', no quoting:
// merchant ids and bank fields may not hold ',' or '"'):
//   # citycard batch payment file v1
//   H,<batch id>,<business date YYYYMMDD>,<line count>,<total fen>
//   D,<n>,<payout ref>,<payee kind>,<payee id>,<account name>,<bank name>,<bank account>,
//     <amount fen>,<amount yuan 0.00>,CNY,<purpose>            (one line, 12 fields)
//   T,<line count>,<total fen>
// payee kind is "merchant" or "deployer"; payout ref is CC<batch>-<line id>-<attempt>, unique
// per attempt; purpose is "settlement <from>-<to>". Amounts in fen are authoritative; the yuan
// column is for people. A file is also written to SettlementOptions::file_dir when set.
//
// reconcile_bank(date) compares the bank's statement of that day with the books, lists every
// difference (a payment or payout the bank has and we do not, one we have and the bank does
// not, amounts that differ, payouts that bounced), and books what the bank confirms: a payout
// paid moves Dr bank_clearing / Cr cash:issuer. A bounced payout stays in bank_clearing and
// goes into the batch's next file. reconcile_terminals(date) compares every batch a terminal
// uploaded that day with what was accepted from it.
//
// Roles: finance and admin prepare, approve, write files and reconcile; merchant users see
// their own lines (statements()).
//
// Threads: one caller at a time (the Backend's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "citycard/backend/bank.h"
#include "citycard/backend/calendar.h"
#include "citycard/backend/clearing.h"
#include "citycard/backend/ledger.h"
#include "citycard/backend/merchants.h"
#include "citycard/backend/store.h"
#include "citycard/backend/users.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"

namespace citycard::backend {

enum class BatchState : std::uint8_t {
  kDraft = 0,
  kApproved = 1,
  kFileWritten = 2,
  kReconciled = 3,  // every payout confirmed
  kCancelled = 4,
};
const char* batch_state_name(BatchState s);

enum class PartyKind : std::uint8_t { kMerchant = 0, kDeployer = 1 };

enum class PayoutState : std::uint8_t {
  kNone = 0,      // nothing to pay (net 0)
  kPending = 1,   // approved, in bank_clearing
  kPaid = 2,      // the bank's statement confirms it
  kReturned = 3,  // bounced; goes into the next file
};

struct SettlementLine {
  std::int64_t id = 0;
  std::int64_t batch_id = 0;
  PartyKind party_kind = PartyKind::kMerchant;
  std::string party_id;
  int period_from = 0;
  int period_to = 0;
  std::int64_t txn_count = 0;
  std::int64_t gross_fen = 0;
  std::int64_t fee_fen = 0;
  std::string deployer_id;
  std::int64_t deployer_share_fen = 0;
  std::int64_t recharge_count = 0;
  std::int64_t recharge_fen = 0;
  std::int64_t commission_fen = 0;
  std::int64_t points_redeemed_fen = 0;
  std::int64_t points_cost_fen = 0;
  std::int64_t qr_count = 0;  // QR payments (qr.h) taken in the period, from qr_payable
  std::int64_t qr_fen = 0;
  std::int64_t refund_count = 0;  // POS refunds deducted (pos_refund.h)
  std::int64_t refund_fen = 0;
  std::int64_t net_fen = 0;
  std::string bank_name;
  std::string bank_account;
  std::string account_name;
  PayoutState payout = PayoutState::kNone;
  std::string payout_ref;
};

struct SettlementBatch {
  std::int64_t id = 0;
  int business_date = 0;
  BatchState state = BatchState::kDraft;
  std::string created_by;
  std::string approved_by;
  std::vector<SettlementLine> lines;
  std::int64_t gross_fen = 0;
  std::int64_t fee_fen = 0;
  std::int64_t net_fen = 0;
  bool more_due = false;  // prepare() stopped at lines_max
};

struct BankFile {
  std::string path;  // empty when SettlementOptions::file_dir is empty
  std::string contents;
  int lines = 0;
  std::int64_t total_fen = 0;
};

enum class DifferenceKind : std::uint8_t {
  kMissingInBank = 0,   // we booked it, the statement does not have it
  kMissingInBooks = 1,  // the statement has it, we did not book it
  kAmountDiffers = 2,
  kPayoutReturned = 3,  // the bank could not pay it
};
const char* difference_kind_name(DifferenceKind k);

struct Difference {
  DifferenceKind kind = DifferenceKind::kMissingInBank;
  StatementKind what = StatementKind::kPaymentIn;
  std::string reference;  // order id or payout ref
  std::int64_t books_fen = 0;
  std::int64_t bank_fen = 0;
  std::string detail;
};

struct BankReconciliation {
  int date = 0;
  std::int64_t matched = 0;
  std::int64_t payouts_confirmed_fen = 0;  // booked out of bank_clearing by this run
  std::vector<Difference> differences;
};

struct TerminalDifference {
  protocol::TerminalId terminal{};
  std::uint64_t batch_no = 0;
  std::int64_t declared_count = 0;
  std::int64_t declared_fen = 0;
  std::int64_t accepted_count = 0;
  std::int64_t accepted_fen = 0;
  std::int64_t duplicates = 0;
  std::int64_t rejected = 0;
  std::string detail;  // the refused records' codes
};

struct TerminalReconciliation {
  int date = 0;
  std::int64_t batches = 0;
  std::int64_t declared_fen = 0;
  std::int64_t accepted_fen = 0;
  std::vector<TerminalDifference> differences;
};

struct SettlementOptions {
  std::string file_dir;           // where bank files go; empty: not written to disk
  std::size_t lines_max = 5'000;  // per batch
};

class Settlement {
 public:
  Settlement(Store& store, Ledger& ledger, Merchants& merchants, Users& users, BankGateway& bank,
             const Calendar& calendar, SettlementOptions options = {})
      : store_(store),
        ledger_(ledger),
        merchants_(merchants),
        users_(users),
        bank_(bank),
        calendar_(calendar),
        options_(options) {}

  Result<SettlementBatch> prepare(const Session& by);
  // Staff see every line; merchant users only their own merchant's.
  Result<SettlementBatch> batch(const Session& by, std::int64_t batch_id) const;
  Status approve(const Session& by, std::int64_t batch_id);
  Status cancel(const Session& by, std::int64_t batch_id);  // drafts only
  Result<BankFile> write_bank_file(const Session& by, std::int64_t batch_id);
  Result<BankReconciliation> reconcile_bank(const Session& by, int date_yyyymmdd);
  Result<TerminalReconciliation> reconcile_terminals(const Session& by, int date_yyyymmdd) const;
  // A merchant's approved lines whose period ends in the range.
  Result<std::vector<SettlementLine>> statements(const Session& by, const std::string& merchant_id,
                                                 const DateRange& range) const;

  // For conservation (backend_money.cpp): what the ledger accounts must mirror.
  Result<std::map<std::string, std::int64_t>> settled_gross_by_merchant() const;
  Result<std::int64_t> bank_clearing_sum_fen() const;
  Result<std::map<std::string, std::int64_t>> deployer_owed() const;
  Result<std::int64_t> points_cost_charged_fen() const;
  Result<std::int64_t> points_redeemed_paid_fen() const;
  Result<std::int64_t> fee_income_fen() const;
  Result<std::int64_t> commission_fen() const;

 private:
  Result<std::vector<SettlementLine>> lines_of(std::int64_t batch_id,
                                               const std::string& only_merchant) const;
  Result<SettlementBatch> read_batch(std::int64_t batch_id, const std::string& only_merchant) const;
  Status insert_line(std::int64_t batch_id, SettlementLine& line);
  Status post_line(const SettlementLine& line);

  Store& store_;
  Ledger& ledger_;
  Merchants& merchants_;
  Users& users_;
  BankGateway& bank_;
  const Calendar& calendar_;
  SettlementOptions options_;
};

}  // namespace citycard::backend
