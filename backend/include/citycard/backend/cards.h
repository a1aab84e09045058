// The card lifecycle at the issuing desk (卡片管理, 发卡终端): issue named or anonymous cards
// of a type (adult, student, elder, staff: the fare tables give each type its discount) with
// deposit, opening value and expiry; cancel an issue; refund; replace; report lost (named
// cards only) and found; freeze and unfreeze; and the online account (联机账户) a named card's
// holder has on the server.
//
// Money (every movement one balanced posting, in the operation's transaction):
// - issue: Dr cash:issuer / Cr card_float (opening value), Cr deposits (deposit) — issuance.h;
// - cancel issue, for a card never used: the same, reversed; the card is wiped (cancelled);
// - refund (退卡), for an active card: the balance the card itself reports (read at the desk),
//   if it is not more than the backend believes, plus the deposit: Dr card_float, Dr deposits /
//   Cr cash:issuer. What the backend believed beyond the card's own figure is purchases still
//   on their way from terminals: it stays on the card's record until they arrive;
// - replace (换卡), for an active (damaged) or lost named card: the believed balance, deposit,
//   points, pending loads and rebates move to a new card; the posting records the move on
//   card_float and deposits (no money enters or leaves). Offline purchases the old card makes
//   before the blacklist reaches every terminal still clear against the old card, whose
//   believed balance then goes below zero: a loss the risk reports show;
// - online account: credited by bank top-ups and debited by loads into the card (recharge.h);
//   the holder's, so it survives a replacement.
//
// Every status but active puts the card on the blacklist; back to active takes it off.
// Operations need admin or finance (desk staff) and are audited. Refusals (wrong status,
// anonymous card reported lost, refund of a lost or cancelled card) are kRejected and change
// nothing.
//
// Identity numbers are never stored: only SHA-256 over a per-database salt and the number.
//
// Threads: one caller at a time (the Backend's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "citycard/backend/calendar.h"
#include "citycard/backend/issuance.h"
#include "citycard/backend/ledger.h"
#include "citycard/backend/notify.h"
#include "citycard/backend/risk.h"
#include "citycard/backend/store.h"
#include "citycard/backend/users.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/status.h"

namespace citycard::backend {

struct HolderInfo {
  std::string name;
  std::string id_number;  // hashed, never stored
  std::string phone;      // SMS; empty: none
  std::string email;      // empty: none
  bool notify = true;
};

struct IssueRequest {
  CardParams card;
  std::optional<HolderInfo> holder;  // present: a named card (记名卡)
};

struct HolderRecord {
  std::int64_t id = 0;
  std::string name;
  std::string id_hash;  // hex
  std::string phone;
  std::string email;
  bool notify = true;
  std::int64_t account_fen = 0;  // the online account
};

struct CardInfo {
  CardRecord card;
  std::optional<HolderRecord> holder;
  std::optional<std::uint16_t> online_counter;  // last seen in INITIALIZE FOR LOAD
  std::optional<protocol::Serial8> replaced_by;
  std::string status_reason;
  bool blacklisted = false;
};

struct RefundResult {
  std::int64_t balance_fen = 0;    // paid back from the purse
  std::int64_t deposit_fen = 0;    // paid back deposit
  std::int64_t in_flight_fen = 0;  // believed minus what the card reported: purchases to come
  std::int64_t total_fen() const { return balance_fen + deposit_fen; }
};

struct CardOptions {
  std::uint64_t id_salt = 0;  // the Backend passes its key seed
  std::size_t text_max_bytes = 64;
  std::int64_t account_max_fen = 500'000;  // an online account holds at most 5,000 yuan
};

class Cards {
 public:
  Cards(Store& store, Ledger& ledger, Issuance& issuance, Risk& risk, Notifier& notifier,
        Users& users, const Calendar& calendar, CardOptions options = {})
      : store_(store),
        ledger_(ledger),
        issuance_(issuance),
        risk_(risk),
        notifier_(notifier),
        users_(users),
        calendar_(calendar),
        options_(options) {}

  Result<protocol::CardImage> issue(const Session& by, const IssueRequest& request);
  Status cancel_issue(const Session& by, const protocol::Serial8& card);
  // `card_balance_fen`: what the card itself says it holds (read at the desk).
  Result<RefundResult> refund(const Session& by, const protocol::Serial8& card,
                              std::int64_t card_balance_fen);
  // The new card's image, carrying the moved balance.
  Result<protocol::CardImage> replace(const Session& by, const protocol::Serial8& old_card);
  Status report_lost(const Session& by, const protocol::Serial8& card);
  Status report_found(const Session& by, const protocol::Serial8& card);
  Status freeze(const Session& by, const protocol::Serial8& card, const std::string& reason);
  Status unfreeze(const Session& by, const protocol::Serial8& card);
  Status unblock(const Session& by, const protocol::Serial8& card);  // admin only
  // Internal (a confirmed fraud), in the caller's transaction.
  Status block(const protocol::Serial8& card, const std::string& reason);

  Result<CardInfo> info(const Session& by, const protocol::Serial8& card) const;
  Status update_contact(const Session& by, const protocol::Serial8& card, const std::string& phone,
                        const std::string& email, bool notify);

  // ---- internal, for recharge (in the caller's transaction) ----
  Result<CardInfo> info(const protocol::Serial8& card) const;
  Status set_online_counter(const protocol::Serial8& card, std::uint16_t counter);
  // The backend's belief grows by a confirmed load.
  Status credit(const protocol::Serial8& card, std::int64_t amount_fen);
  Status credit_account(std::int64_t holder_id, std::int64_t amount_fen);
  // kInsufficientFunds when the account holds less.
  Status debit_account(std::int64_t holder_id, std::int64_t amount_fen);
  Result<std::int64_t> account_sum_fen() const;

  std::string id_hash(const std::string& id_number) const;

 private:
  Status set_status(const protocol::Serial8& card, CardStatus status, const std::string& reason);
  Status transition(const Session& by, const char* action, const protocol::Serial8& card,
                    std::initializer_list<CardStatus> from, CardStatus to,
                    const std::string& reason, bool named_only);
  Status ensure_ext(const protocol::Serial8& card);

  Store& store_;
  Ledger& ledger_;
  Issuance& issuance_;
  Risk& risk_;
  Notifier& notifier_;
  Users& users_;
  const Calendar& calendar_;
  CardOptions options_;
};

}  // namespace citycard::backend
