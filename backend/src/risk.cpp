#include "citycard/backend/risk.h"

#include <map>

#include "citycard/backend/merchants.h"
#include "citycard/backend/notify.h"
#include "sql_util.h"

namespace citycard::backend {

using protocol::Serial8;

namespace {

constexpr const char* kVersionKey = "blacklist_version";
constexpr const char* kHorizonKey = "blacklist_horizon";
constexpr std::size_t kReasonMax = 128;
constexpr int kSwipeActivity = 0;
constexpr int kRechargeActivity = 1;

bool valid_kind(RiskKind k) {
  return k >= RiskKind::kPurchaseAmountOver && k <= RiskKind::kBlacklistedCard;
}

std::string clip(std::string s) {
  if (s.size() > kReasonMax) s.resize(kReasonMax);
  return s;
}

}  // namespace

const char* risk_kind_name(RiskKind k) {
  switch (k) {
    case RiskKind::kPurchaseAmountOver:
      return "purchase_amount_over";
    case RiskKind::kPurchasesPerMinuteOver:
      return "purchases_per_minute_over";
    case RiskKind::kRechargeAmountOver:
      return "recharge_amount_over";
    case RiskKind::kRechargesPerMinuteOver:
      return "recharges_per_minute_over";
    case RiskKind::kBlacklistedCard:
      return "blacklisted_card";
    case RiskKind::kFinding:
      return "finding";
  }
  return "unknown";
}

Status Risk::open() {
  return load_rules();
}

Status Risk::load_rules() {
  auto q = store_.query(
      "SELECT id, kind, merchant_id, threshold, action, enabled FROM risk_rules ORDER BY id");
  std::vector<RiskRule> rules;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) break;
    RiskRule r;
    r.id = q.column_int64(0);
    r.kind = static_cast<RiskKind>(q.column_int64(1));
    r.merchant_id = q.column_text(2);
    r.threshold = q.column_int64(3);
    r.action = static_cast<RiskAction>(q.column_int64(4));
    r.enabled = q.column_int64(5) != 0;
    rules.push_back(std::move(r));
  }
  rules_ = std::move(rules);
  return Status::ok();
}

// ---- blacklist -----------------------------------------------------------------------------

Result<std::uint64_t> Risk::next_version() {
  auto v = sql::meta_int(store_, kVersionKey);
  if (!v.is_ok()) return v.status();
  if (Status s = sql::set_meta_int(store_, kVersionKey, *v + 1); !s.is_ok()) return s;
  return static_cast<std::uint64_t>(*v + 1);
}

Status Risk::prune_changes() {
  auto n = sql::scalar(store_, "SELECT count(*) FROM blacklist_changes");
  if (!n.is_ok()) return n.status();
  const auto max = static_cast<std::int64_t>(options_.change_log_max);
  if (*n <= max) return Status::ok();
  // Drop the oldest; the horizon says up to where a delta can no longer be served.
  auto q = store_.query("SELECT version FROM blacklist_changes ORDER BY version LIMIT 1 OFFSET ?1");
  q.bind(1, *n - max - 1);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status::ok();
  const std::int64_t horizon = q.column_int64(0);
  if (Status s =
          store_.query("DELETE FROM blacklist_changes WHERE version <= ?1").bind(1, horizon).run();
      !s.is_ok()) {
    return s;
  }
  return sql::set_meta_int(store_, kHorizonKey, horizon);
}

Status Risk::list_card(const Serial8& serial, const std::string& reason) {
  auto already = listed(serial);
  if (!already.is_ok()) return already.status();
  if (*already) return Status::ok();
  auto size = blacklist_size();
  if (!size.is_ok()) return size.status();
  if (static_cast<std::size_t>(*size) >= options_.blacklist_entries_max) {
    return Status(Errc::kTooLarge, "blacklist is full at " +
                                       std::to_string(options_.blacklist_entries_max) +
                                       " cards; card " + to_hex(serial) + " was not listed");
  }
  auto v = next_version();
  if (!v.is_ok()) return v.status();
  const auto version = static_cast<std::int64_t>(*v);
  if (Status s = store_
                     .query("INSERT INTO blacklist(serial, version, reason, at_us) "
                            "VALUES (?1, ?2, ?3, ?4)")
                     .bind_blob(1, serial)
                     .bind(2, version)
                     .bind(3, clip(reason))
                     .bind(4, calendar_.now_us())
                     .run();
      !s.is_ok()) {
    return s;
  }
  if (Status s = store_
                     .query("INSERT INTO blacklist_changes(version, serial, listed, reason, at_us) "
                            "VALUES (?1, ?2, 1, ?3, ?4)")
                     .bind(1, version)
                     .bind_blob(2, serial)
                     .bind(3, clip(reason))
                     .bind(4, calendar_.now_us())
                     .run();
      !s.is_ok()) {
    return s;
  }
  return prune_changes();
}

Status Risk::unlist_card(const Serial8& serial) {
  auto already = listed(serial);
  if (!already.is_ok()) return already.status();
  if (!*already) return Status::ok();
  auto v = next_version();
  if (!v.is_ok()) return v.status();
  if (Status s = store_.query("DELETE FROM blacklist WHERE serial = ?1").bind_blob(1, serial).run();
      !s.is_ok()) {
    return s;
  }
  if (Status s = store_
                     .query("INSERT INTO blacklist_changes(version, serial, listed, reason, at_us) "
                            "VALUES (?1, ?2, 0, '', ?3)")
                     .bind(1, static_cast<std::int64_t>(*v))
                     .bind_blob(2, serial)
                     .bind(3, calendar_.now_us())
                     .run();
      !s.is_ok()) {
    return s;
  }
  return prune_changes();
}

Result<bool> Risk::listed(const Serial8& serial) const {
  auto q = store_.query("SELECT 1 FROM blacklist WHERE serial = ?1");
  q.bind_blob(1, serial);
  return q.step();
}

Result<std::uint64_t> Risk::blacklist_version() const {
  auto v = sql::meta_int(store_, kVersionKey);
  if (!v.is_ok()) return v.status();
  return static_cast<std::uint64_t>(*v);
}

Result<std::int64_t> Risk::blacklist_size() const {
  return sql::scalar(store_, "SELECT count(*) FROM blacklist");
}

Result<BlacklistPage> Risk::page(std::uint64_t since, bool full_continuation) const {
  auto latest = blacklist_version();
  if (!latest.is_ok()) return latest.status();
  auto horizon = sql::meta_int(store_, kHorizonKey);
  if (!horizon.is_ok()) return horizon.status();
  BlacklistPage p;
  p.latest_version = *latest;
  const bool restart =
      !full_continuation &&
      (since == 0 || since < static_cast<std::uint64_t>(*horizon) || since > *latest);
  p.full = full_continuation || restart;
  p.reset = restart;
  const std::uint64_t cursor = restart ? 0 : since;
  const auto max = static_cast<std::int64_t>(options_.reply_entries_max);
  // A full transfer sends the cards on the list now, plus removals it still knows of (so a
  // card listed and unlisted while the transfer runs is not left behind); a delta sends every
  // change. Both in version order, so `version` is a valid resume point.
  auto q = store_.query(
      p.full ? "SELECT version, serial, listed FROM ("
               "SELECT version, serial, 1 AS listed FROM blacklist WHERE version > ?1 "
               "UNION ALL SELECT version, serial, 0 FROM blacklist_changes "
               "WHERE listed = 0 AND version > ?1) ORDER BY version LIMIT ?2"
             : "SELECT version, serial, listed FROM blacklist_changes WHERE version > ?1 "
               "ORDER BY version LIMIT ?2");
  // One row more than a page tells whether there is more.
  q.bind(1, static_cast<std::int64_t>(cursor)).bind(2, max + 1);
  // The last change of a serial within the page decides its state.
  std::map<Serial8, bool> final_state;
  std::vector<Serial8> order;
  std::int64_t rows = 0, last_version = static_cast<std::int64_t>(cursor);
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) break;
    if (++rows > max) break;
    last_version = q.column_int64(0);
    Serial8 s{};
    if (!sql::copy_blob(q.column_blob(1), s)) {
      return Status(Errc::kInternal, "blacklist holds a serial of the wrong length");
    }
    auto [it, inserted] = final_state.emplace(s, q.column_int64(2) != 0);
    if (inserted) {
      order.push_back(s);
    } else {
      it->second = q.column_int64(2) != 0;
    }
  }
  for (const Serial8& s : order) (final_state[s] ? p.added : p.removed).push_back(s);
  p.more = rows > max;
  p.version = p.more ? static_cast<std::uint64_t>(last_version) : *latest;
  return p;
}

// ---- rules ---------------------------------------------------------------------------------

Result<std::int64_t> Risk::add_rule(const Session& by, RiskRule rule) {
  return users_.audited(
      by, "add_risk_rule", std::string(risk_kind_name(rule.kind)) + " " + rule.merchant_id,
      [&]() -> Result<std::int64_t> {
        if (Status s = users_.require(by, {Role::kAdmin}, "add_risk_rule"); !s.is_ok()) return s;
        if (!valid_kind(rule.kind)) return Status(Errc::kInvalidArgument, "unknown rule kind");
        if (rule.action != RiskAction::kFlag && rule.action != RiskAction::kReject) {
          return Status(Errc::kInvalidArgument, "unknown rule action");
        }
        if (rule.threshold < 0) return Status(Errc::kInvalidArgument, "threshold < 0");
        if (Status s = sql::check_text("merchant id", rule.merchant_id, 64, false); !s.is_ok()) {
          return s;
        }
        if (rules_.size() >= options_.rules_max) {
          return Status(Errc::kTooLarge,
                        "rule limit of " + std::to_string(options_.rules_max) + " reached");
        }
        if (Status s = store_
                           .query("INSERT INTO risk_rules(kind, merchant_id, threshold, action, "
                                  "enabled, created_by, created_at_us) "
                                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                           .bind(1, static_cast<std::int64_t>(rule.kind))
                           .bind(2, rule.merchant_id)
                           .bind(3, rule.threshold)
                           .bind(4, static_cast<std::int64_t>(rule.action))
                           .bind(5, std::int64_t{rule.enabled ? 1 : 0})
                           .bind(6, by.user)
                           .bind(7, calendar_.now_us())
                           .run();
            !s.is_ok()) {
          return s;
        }
        rule.id = store_.last_insert_rowid();
        // The mirror changes only with the row; a later rollback reloads it (below).
        rules_.push_back(rule);
        return rule.id;
      });
}

Status Risk::set_rule_enabled(const Session& by, std::int64_t rule_id, bool enabled) {
  Status s = users_.audited(
      by, enabled ? "enable_risk_rule" : "disable_risk_rule", std::to_string(rule_id),
      [&]() -> Status {
        if (Status st = users_.require(by, {Role::kAdmin}, "set_risk_rule"); !st.is_ok()) {
          return st;
        }
        auto q = store_.query(
            "UPDATE risk_rules SET enabled = ?2 WHERE id = ?1 "
            "RETURNING id");
        q.bind(1, rule_id).bind(2, std::int64_t{enabled ? 1 : 0});
        auto row = q.step();
        if (!row.is_ok()) return row.status();
        if (!*row) {
          return Status(Errc::kNotFound, "no risk rule " + std::to_string(rule_id));
        }
        return Status::ok();
      });
  // Whatever happened, the mirror follows the store.
  if (Status r = load_rules(); !r.is_ok()) return r;
  return s;
}

bool Risk::applies(const RiskRule& rule, RiskKind kind, const std::string& merchant_id) const {
  return rule.enabled && rule.kind == kind &&
         (rule.merchant_id.empty() || rule.merchant_id == merchant_id);
}

// ---- checks --------------------------------------------------------------------------------

Result<std::int64_t> Risk::count_activity(const std::string& merchant_id, int kind,
                                          std::int64_t minute, std::int64_t amount_fen) {
  auto q = store_.query(
      "INSERT INTO risk_activity(merchant_id, kind, minute, count, amount_fen) "
      "VALUES (?1, ?2, ?3, 1, ?4) ON CONFLICT(merchant_id, kind, minute) DO UPDATE SET "
      "count = count + 1, amount_fen = amount_fen + excluded.amount_fen RETURNING count");
  q.bind(1, merchant_id).bind(2, std::int64_t{kind}).bind(3, minute).bind(4, amount_fen);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status(Errc::kInternal, "activity upsert returned no row");
  return q.column_int64(0);
}

Status Risk::add_event(const RiskRule& rule, const std::string& merchant_id,
                       const std::optional<Serial8>& card, const std::string& ref,
                       std::int64_t amount_fen, const std::string& detail) {
  auto q = store_.query(
      "INSERT INTO risk_events(at_us, rule_id, kind, action, merchant_id, card_serial, ref, "
      "amount_fen, detail, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  q.bind(1, calendar_.now_us())
      .bind(2, rule.id)
      .bind(3, static_cast<std::int64_t>(rule.kind))
      .bind(4, static_cast<std::int64_t>(rule.action))
      .bind(5, merchant_id)
      .bind(7, ref)
      .bind(8, amount_fen)
      .bind(9, clip(detail))
      .bind(10,
            static_cast<std::int64_t>(rule.action == RiskAction::kReject ? RiskEventState::kRejected
                                                                         : RiskEventState::kOpen));
  if (card) {
    q.bind_blob(6, *card);
  } else {
    q.bind_null(6);
  }
  return q.run();
}

Status Risk::raise(const std::string& merchant_id, const Serial8& card, const std::string& ref,
                   std::int64_t amount_fen, const std::string& detail, bool refused) {
  RiskRule none;  // id 0: no rule, a finding of the code itself
  none.kind = RiskKind::kFinding;
  none.action = refused ? RiskAction::kReject : RiskAction::kFlag;
  return add_event(none, merchant_id, card, ref, amount_fen, detail);
}

Result<SwipeCheck> Risk::check_swipe(const SwipeFacts& f) {
  SwipeCheck out;
  const std::string& merchant = f.terminal.operator_id;
  bool counted = false;
  std::int64_t count = 0;
  for (const RiskRule& rule : rules_) {
    std::string why;
    if (applies(rule, RiskKind::kPurchaseAmountOver, merchant) && f.amount_fen > rule.threshold) {
      why = "purchase of " + std::to_string(f.amount_fen) + " fen over " +
            std::to_string(rule.threshold) + " at " + merchant;
    } else if (applies(rule, RiskKind::kPurchasesPerMinuteOver, merchant)) {
      if (!counted) {
        const std::int64_t minute = protocol::epoch2000_from_datetime(f.datetime) / 60;
        auto c = count_activity(merchant, kSwipeActivity, minute, f.amount_fen);
        if (!c.is_ok()) return c.status();
        count = *c;
        counted = true;
      }
      if (count > rule.threshold) {
        why = std::to_string(count) + " purchases within a minute at " + merchant + " (over " +
              std::to_string(rule.threshold) + ")";
      }
    } else if (applies(rule, RiskKind::kBlacklistedCard, merchant)) {
      auto l = listed(f.card.serial);
      if (!l.is_ok()) return l.status();
      if (*l) why = "card " + to_hex(f.card.serial) + " is blacklisted";
    }
    if (why.empty()) continue;
    if (Status s = add_event(rule, merchant, f.card.serial, f.ref, f.amount_fen, why); !s.is_ok()) {
      return s;
    }
    const std::string tagged = "risk rule " + std::to_string(rule.id) + ": " + why;
    if (rule.action == RiskAction::kReject) {
      if (!out.reject) out.reject_reason = tagged;
      out.reject = true;
    } else {
      out.reasons.push_back(tagged);
    }
  }
  return out;
}

Result<RechargeCheck> Risk::check_recharge(const std::string& merchant, const Serial8& card,
                                           std::int64_t amount_fen, const std::string& order_id) {
  RechargeCheck out;
  bool counted = false;
  std::int64_t count = 0;
  for (const RiskRule& rule : rules_) {
    std::string why;
    if (applies(rule, RiskKind::kRechargeAmountOver, merchant) && amount_fen > rule.threshold) {
      why = "recharge of " + std::to_string(amount_fen) + " fen over " +
            std::to_string(rule.threshold);
    } else if (applies(rule, RiskKind::kRechargesPerMinuteOver, merchant)) {
      if (!counted) {
        auto c = count_activity(merchant, kRechargeActivity, calendar_.now_epoch2000_s() / 60,
                                amount_fen);
        if (!c.is_ok()) return c.status();
        count = *c;
        counted = true;
      }
      if (count > rule.threshold) {
        why = std::to_string(count) + " recharges within a minute at " +
              (merchant.empty() ? std::string("(online)") : merchant) + " (over " +
              std::to_string(rule.threshold) + ")";
      }
    }
    if (why.empty()) continue;
    if (Status s = add_event(rule, merchant, card, order_id, amount_fen, why); !s.is_ok()) {
      return s;
    }
    if (rule.action == RiskAction::kReject && !out.reject) {
      out.reject = true;
      out.reason = "risk rule " + std::to_string(rule.id) + ": " + why;
    }
  }
  return out;
}

// ---- events --------------------------------------------------------------------------------

Result<std::vector<RiskEvent>> Risk::events(const Session& by, const RiskEventFilter& f) const {
  if (Status s = users_.require(
          by, {Role::kAdmin, Role::kFinance, Role::kMerchantOwner, Role::kMerchantOperator},
          "risk_events");
      !s.is_ok()) {
    return s;
  }
  const bool merchant_user = by.role == Role::kMerchantOwner || by.role == Role::kMerchantOperator;
  const std::string merchant = merchant_user ? by.merchant_id : f.merchant_id;
  auto q = store_.query(
      "SELECT id, at_us, rule_id, kind, action, merchant_id, card_serial, ref, amount_fen, "
      "detail, state, decided_by FROM risk_events WHERE (?1 < 0 OR state = ?1) AND "
      "(?2 = '' OR merchant_id = ?2) ORDER BY id DESC LIMIT ?3");
  q.bind(1, f.state ? static_cast<std::int64_t>(*f.state) : -1)
      .bind(2, merchant)
      .bind(3, static_cast<std::int64_t>(std::min<std::size_t>(f.limit, 1'000)));
  std::vector<RiskEvent> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    RiskEvent e;
    e.id = q.column_int64(0);
    e.at_us = q.column_int64(1);
    e.rule_id = q.column_int64(2);
    e.kind = static_cast<RiskKind>(q.column_int64(3));
    e.action = static_cast<RiskAction>(q.column_int64(4));
    e.merchant_id = q.column_text(5);
    if (!q.column_is_null(6)) {
      Serial8 s{};
      if (sql::copy_blob(q.column_blob(6), s)) e.card = s;
    }
    e.ref = q.column_text(7);
    e.amount_fen = q.column_int64(8);
    e.detail = q.column_text(9);
    e.state = static_cast<RiskEventState>(q.column_int64(10));
    e.decided_by = q.column_text(11);
    out.push_back(std::move(e));
  }
}

Status Risk::decide(const Session& by, std::int64_t event_id, bool fraud) {
  return users_.audited(
      by, fraud ? "confirm_fraud" : "confirm_legit", std::to_string(event_id), [&]() -> Status {
        if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "decide_risk_event");
            !s.is_ok()) {
          return s;
        }
        auto q = store_.query("SELECT state, card_serial FROM risk_events WHERE id = ?1");
        q.bind(1, event_id);
        auto row = q.step();
        if (!row.is_ok()) return row.status();
        if (!*row) return Status(Errc::kNotFound, "no risk event " + std::to_string(event_id));
        if (q.column_int64(0) != static_cast<std::int64_t>(RiskEventState::kOpen)) {
          return Status(Errc::kRejected, "risk event " + std::to_string(event_id) + " is not open");
        }
        std::optional<Serial8> card;
        if (!q.column_is_null(1)) {
          Serial8 s{};
          if (sql::copy_blob(q.column_blob(1), s)) card = s;
        }
        if (Status s = store_
                           .query("UPDATE risk_events SET state = ?2, decided_by = ?3, "
                                  "decided_at_us = ?4 WHERE id = ?1")
                           .bind(1, event_id)
                           .bind(2, static_cast<std::int64_t>(fraud ? RiskEventState::kFraud
                                                                    : RiskEventState::kLegit))
                           .bind(3, by.user)
                           .bind(4, calendar_.now_us())
                           .run();
            !s.is_ok()) {
          return s;
        }
        if (fraud && card && block_card_) {
          return block_card_(*card, "fraud confirmed on risk event " + std::to_string(event_id));
        }
        return Status::ok();
      });
}

Result<std::int64_t> Risk::open_event_count() const {
  return sql::scalar(store_, "SELECT count(*) FROM risk_events WHERE state = 0");
}

Status Risk::poll() {
  const std::int64_t now_minute = calendar_.now_epoch2000_s() / 60;
  // Purchases count by their own time, which is close to now; a very late upload only
  // recreates a counter that the next poll drops again.
  return store_.query("DELETE FROM risk_activity WHERE minute < ?1")
      .bind(1, now_minute - options_.activity_minutes_kept)
      .run();
}

// ---- the ingest hook -----------------------------------------------------------------------

Result<SwipeCheck> SwipeRules::check_swipe(const SwipeFacts& swipe) {
  return risk_.check_swipe(swipe);
}

Status SwipeRules::swipe_accepted(const SwipeFacts& swipe, std::int64_t swipe_id) {
  if (Status s = merchants_.award_points(swipe, swipe_id); !s.is_ok()) return s;
  return notifier_.on_purchase(swipe);
}

}  // namespace citycard::backend
