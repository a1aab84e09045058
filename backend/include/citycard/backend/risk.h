// Risk and blacklist (风险参数管理, 风险信息管理, 黑名单管理).
//
// Blacklist: a set of card serials with a version. Every change (a card listed or unlisted)
// takes the next version and is kept in a change log of bounded length; terminals pull "what
// changed since version N" (page()). When N is 0, older than the change log (its horizon), or
// newer than anything we issued, they get the full list instead, flagged reset so that they
// drop what they hold first. Replies are bounded to RiskOptions::reply_entries_max serials; a
// client keeps asking with the version it got while `more` is set. The list itself is bounded
// (blacklist_entries_max): listing beyond it is kTooLarge, reported, never dropped. Cards
// enter the list when they stop being active (lost, frozen, refunded, cancelled, replaced,
// blocked) and leave it when they are active again (cards.cpp keeps both in step).
//
// Rules: each rejects (illegal: the record is refused, no money moves) or flags (suspicious:
// accepted, an open risk event awaits an operator's decision). Kinds: one purchase or recharge
// over an amount; more than N purchases or recharges at one merchant within one calendar minute
// (of the purchase's own time; of the backend's clock for recharges); a purchase by a
// blacklisted card. A rule names one merchant or, with an empty merchant id, all of them.
// Every triggered rule leaves a risk event; decide() closes an open one as legitimate or as
// fraud (which blocks the card).
//
// Threads: one caller at a time (the Backend's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "citycard/backend/calendar.h"
#include "citycard/backend/store.h"
#include "citycard/backend/swipe_hook.h"
#include "citycard/backend/users.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"

namespace citycard::backend {

class Merchants;
class Notifier;

struct RiskOptions {
  std::size_t blacklist_entries_max = 100'000;
  std::size_t reply_entries_max = 5'000;
  std::size_t change_log_max = 200'000;  // older changes are pruned; see the horizon above
  std::size_t rules_max = 1'000;
  int activity_minutes_kept = 24 * 60;  // alarm counters older than this are pruned by poll()
};

enum class RiskKind : std::uint8_t {
  kPurchaseAmountOver = 1,      // threshold: fen
  kPurchasesPerMinuteOver = 2,  // threshold: count
  kRechargeAmountOver = 3,      // threshold: fen
  kRechargesPerMinuteOver = 4,  // threshold: count
  kBlacklistedCard = 5,         // threshold unused
  kFinding = 6,                 // not a rule: raised by the code (a forged load TAC...)
};
const char* risk_kind_name(RiskKind k);

enum class RiskAction : std::uint8_t { kFlag = 0, kReject = 1 };

struct RiskRule {
  std::int64_t id = 0;  // assigned by add_rule
  RiskKind kind = RiskKind::kPurchaseAmountOver;
  std::string merchant_id;  // empty: every merchant
  std::int64_t threshold = 0;
  RiskAction action = RiskAction::kFlag;
  bool enabled = true;
  bool operator==(const RiskRule&) const = default;
};

enum class RiskEventState : std::uint8_t {
  kOpen = 0,      // flagged, awaiting an operator
  kLegit = 1,     // an operator confirmed it was fine
  kFraud = 2,     // an operator confirmed fraud; the card was blocked
  kRejected = 3,  // a reject rule refused it; nothing to decide
};

struct RiskEvent {
  std::int64_t id = 0;
  std::int64_t at_us = 0;
  std::int64_t rule_id = 0;
  RiskKind kind = RiskKind::kPurchaseAmountOver;
  RiskAction action = RiskAction::kFlag;
  std::string merchant_id;
  std::optional<protocol::Serial8> card;
  std::string ref;  // swipe "<serial>#<counter>" or order id
  std::int64_t amount_fen = 0;
  std::string detail;
  RiskEventState state = RiskEventState::kOpen;
  std::string decided_by;
};

struct RiskEventFilter {
  std::optional<RiskEventState> state;
  std::string merchant_id;  // empty: any
  std::size_t limit = 100;
};

// One page of the blacklist for a terminal.
struct BlacklistPage {
  std::uint64_t version = 0;         // the client's version after applying this page
  std::uint64_t latest_version = 0;  // the newest version there is
  bool full = false;                 // part of a full transfer (ask on with full = true)
  bool reset = false;                // drop the list you hold before applying this page
  bool more = false;                 // ask again with `version`
  std::vector<protocol::Serial8> added;
  std::vector<protocol::Serial8> removed;
};

// The outcome of the recharge rules for one order.
struct RechargeCheck {
  bool reject = false;
  std::string reason;
};

class Risk {
 public:
  Risk(Store& store, const Calendar& calendar, Users& users, RiskOptions options = {})
      : store_(store), calendar_(calendar), users_(users), options_(options) {}

  // Loads the rules into memory.
  Status open();
  // Called by decide() when an operator confirms fraud on a card (cards.cpp blocks it).
  void set_block_card(std::function<Status(const protocol::Serial8&, const std::string&)> f) {
    block_card_ = std::move(f);
  }

  // ---- blacklist (internal: the caller runs it in its own transaction) ----
  Status list_card(const protocol::Serial8& serial, const std::string& reason);  // idempotent
  Status unlist_card(const protocol::Serial8& serial);                           // idempotent
  Result<bool> listed(const protocol::Serial8& serial) const;
  Result<std::uint64_t> blacklist_version() const;
  Result<std::int64_t> blacklist_size() const;
  // `full_continuation`: the client is in the middle of a full transfer.
  Result<BlacklistPage> page(std::uint64_t since_version, bool full_continuation) const;

  // ---- rules (admin) ----
  Result<std::int64_t> add_rule(const Session& by, RiskRule rule);
  Status set_rule_enabled(const Session& by, std::int64_t rule_id, bool enabled);
  const std::vector<RiskRule>& rules() const { return rules_; }

  // ---- checks (internal, inside the caller's transaction) ----
  Result<SwipeCheck> check_swipe(const SwipeFacts& swipe);
  Result<RechargeCheck> check_recharge(const std::string& merchant_id,
                                       const protocol::Serial8& card, std::int64_t amount_fen,
                                       const std::string& order_id);
  // A risk event without a rule: something an operator must look at (a load TAC that does not
  // verify, a card credited by an order we had given up on).
  // `refused`: the operation was refused by a rule and rolled back; the event records it.
  Status raise(const std::string& merchant_id, const protocol::Serial8& card,
               const std::string& ref, std::int64_t amount_fen, const std::string& detail,
               bool refused = false);

  // ---- events (admin, finance; merchant roles see their own merchant's) ----
  Result<std::vector<RiskEvent>> events(const Session& by, const RiskEventFilter& filter) const;
  Status decide(const Session& by, std::int64_t event_id, bool fraud);
  Result<std::int64_t> open_event_count() const;

  // Prunes alarm counters older than activity_minutes_kept.
  Status poll();

  const RiskOptions& options() const { return options_; }

 private:
  Status load_rules();
  Result<std::uint64_t> next_version();
  Status prune_changes();
  Result<std::int64_t> count_activity(const std::string& merchant_id, int kind, std::int64_t minute,
                                      std::int64_t amount_fen);
  Status add_event(const RiskRule& rule, const std::string& merchant_id,
                   const std::optional<protocol::Serial8>& card, const std::string& ref,
                   std::int64_t amount_fen, const std::string& detail);
  bool applies(const RiskRule& rule, RiskKind kind, const std::string& merchant_id) const;

  Store& store_;
  const Calendar& calendar_;
  Users& users_;
  RiskOptions options_;
  std::vector<RiskRule> rules_;  // mirror of risk_rules, by id
  std::function<Status(const protocol::Serial8&, const std::string&)> block_card_;
};

// The SwipeHook ingest calls: risk rules first, then points and purchase notifications.
class SwipeRules final : public SwipeHook {
 public:
  SwipeRules(Risk& risk, Merchants& merchants, Notifier& notifier)
      : risk_(risk), merchants_(merchants), notifier_(notifier) {}
  Result<SwipeCheck> check_swipe(const SwipeFacts& swipe) override;
  Status swipe_accepted(const SwipeFacts& swipe, std::int64_t swipe_id) override;

 private:
  Risk& risk_;
  Merchants& merchants_;
  Notifier& notifier_;
};

}  // namespace citycard::backend
