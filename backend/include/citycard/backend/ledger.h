// Double-entry ledger in integer fen.
//
// Sign convention: a debit is positive, a credit negative. Every posting's entries sum to
// zero, so the sum of all account balances is always zero (the trial balance). Asset accounts
// (cash:issuer) carry positive balances; liabilities (card_float: what cards hold,
// payable:<operator>: what is owed to an operator, deposits) carry negative ones.
//
// Contract:
// - post() refuses, with a Status and without writing anything, a posting that does not
//   balance, has fewer than two entries, a zero entry, an unknown account, or would overflow.
// - Accounts must be opened before use (open_account is idempotent), so a misspelt name is an
//   error rather than a new account.
// - Everything is in the Store; post() runs inside the caller's transaction when one is open
//   (a SAVEPOINT), so a batch's postings commit or vanish with the batch.
//
// Threads: one caller at a time (the Backend's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "citycard/backend/calendar.h"
#include "citycard/backend/store.h"
#include "citycard/protocol/status.h"

namespace citycard::backend {

namespace account {
inline constexpr std::string_view kIssuerCash = "cash:issuer";  // money taken in at issuance
inline constexpr std::string_view kCardFloat = "card_float";    // owed to cardholders
inline constexpr std::string_view kDeposits = "deposits";       // card deposits, refundable
inline constexpr std::string_view kFeeIncome = "fee_income";
inline constexpr std::string_view kPayablePrefix = "payable:";
// What the clearing centre owes an operator for the rides its terminals took.
std::string payable(std::string_view operator_id);
}  // namespace account

// Limits: postings are small and names short; anything larger is a bug upstream.
inline constexpr std::size_t kMaxEntriesPerPosting = 64;
inline constexpr std::size_t kMaxAccountNameBytes = 96;
inline constexpr std::size_t kMaxPostingTextBytes = 128;  // kind and reference

struct Entry {
  std::string account;
  std::int64_t amount_fen = 0;  // debit +, credit -
};

struct Posting {
  std::string kind;       // "issue", "swipe", ...
  std::string reference;  // what it is about: "card 3100...", "swipe <serial>#<counter>"
  std::vector<Entry> entries;
};

struct AccountBalance {
  std::string account;
  std::int64_t balance_fen = 0;
  bool operator==(const AccountBalance&) const = default;
};

struct TrialBalance {
  std::vector<AccountBalance> accounts;  // by name
  std::int64_t sum_fen = 0;
  bool balanced() const { return sum_fen == 0; }
};

class Ledger {
 public:
  Ledger(Store& store, const Calendar& calendar) : store_(store), calendar_(calendar) {}

  Status open_account(std::string_view name);
  // Returns the new posting's id.
  Result<std::int64_t> post(const Posting& posting);

  // kNotFound for an account never opened.
  Result<std::int64_t> balance(std::string_view account) const;
  // Accounts whose name starts with `prefix` ("" for all), by name.
  Result<std::vector<AccountBalance>> balances(std::string_view prefix = "") const;
  Result<TrialBalance> trial_balance() const;
  Result<std::int64_t> posting_count() const;
  // The books are sound: every stored balance equals the sum of its entries, every posting
  // sums to zero, and the trial balance is zero. Names the first discrepancy.
  Status verify() const;

 private:
  Store& store_;
  const Calendar& calendar_;
};

}  // namespace citycard::backend
