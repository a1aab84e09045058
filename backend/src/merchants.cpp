#include "citycard/backend/merchants.h"

#include <algorithm>

#include "citycard/backend/money.h"
#include "dates.h"
#include "sql_util.h"

namespace citycard::backend {

using protocol::Serial8;

namespace {

constexpr const char* kMerchantColumns =
    "SELECT merchant_id, name, kind, cycle, txn_fee_bp, recharge_fee_bp, deployer_id, "
    "deployer_share_bp, bank_name, bank_account, account_name, points_coefficient_milli, "
    "points_funding, recharge_enabled, start_date, quota_fen, points_stock, settled_through, "
    "active FROM merchants ";

MerchantRecord merchant_from_row(const Query& q) {
  MerchantRecord m;
  MerchantParams& p = m.params;
  p.merchant_id = q.column_text(0);
  p.name = q.column_text(1);
  p.kind = static_cast<MerchantKind>(q.column_int64(2));
  p.cycle = static_cast<SettlementCycle>(q.column_int64(3));
  p.txn_fee_bp = q.column_int64(4);
  p.recharge_fee_bp = q.column_int64(5);
  p.deployer_id = q.column_text(6);
  p.deployer_share_bp = q.column_int64(7);
  p.bank_name = q.column_text(8);
  p.bank_account = q.column_text(9);
  p.account_name = q.column_text(10);
  p.points_coefficient_milli = q.column_int64(11);
  p.points_funding = static_cast<PointsFunding>(q.column_int64(12));
  p.recharge_enabled = q.column_int64(13) != 0;
  p.start_date = static_cast<int>(q.column_int64(14));
  m.quota_fen = q.column_int64(15);
  m.points_stock = q.column_int64(16);
  m.settled_through = static_cast<int>(q.column_int64(17));
  m.active = q.column_int64(18) != 0;
  return m;
}

bool staff(Role r) {
  return r == Role::kAdmin || r == Role::kFinance;
}

Status check_rate(const char* what, std::int64_t bp) {
  if (bp < 0 || bp > kBasisPointsWhole) {
    return Status(Errc::kInvalidArgument, std::string(what) + " must be 0..10000 bp");
  }
  return Status::ok();
}

}  // namespace

const char* merchant_kind_name(MerchantKind k) {
  switch (k) {
    case MerchantKind::kRetail:
      return "retail";
    case MerchantKind::kTransit:
      return "transit";
    case MerchantKind::kDesk:
      return "desk";
  }
  return "unknown";
}

const char* cycle_name(SettlementCycle c) {
  switch (c) {
    case SettlementCycle::kDaily:
      return "daily";
    case SettlementCycle::kWeekly:
      return "weekly";
    case SettlementCycle::kMonthly:
      return "monthly";
  }
  return "unknown";
}

Status Merchants::open() {
  return load();
}

Status Merchants::load() {
  std::map<std::string, MerchantParams> cache;
  {
    auto q = store_.query(std::string(kMerchantColumns) + "ORDER BY merchant_id");
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      MerchantRecord m = merchant_from_row(q);
      cache.emplace(m.params.merchant_id, std::move(m.params));
    }
  }
  std::vector<CardLevel> levels;
  {
    auto q = store_.query(
        "SELECT level, name, min_spend_fen, points_pct FROM card_levels ORDER BY min_spend_fen");
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      levels.push_back({static_cast<int>(q.column_int64(0)), q.column_text(1), q.column_int64(2),
                        q.column_int64(3)});
    }
  }
  cache_ = std::move(cache);
  levels_ = std::move(levels);
  return Status::ok();
}

const MerchantParams* Merchants::find(const std::string& merchant_id) const {
  auto it = cache_.find(merchant_id);
  return it == cache_.end() ? nullptr : &it->second;
}

std::vector<std::string> Merchants::ids() const {
  std::vector<std::string> out;
  for (const auto& [id, p] : cache_) out.push_back(id);
  return out;
}

Status Merchants::check_params(const MerchantParams& p) const {
  const std::size_t max = options_.text_max_bytes;
  for (Status s :
       {sql::check_text("merchant id", p.merchant_id, max, true),
        sql::check_text("merchant name", p.name, max, true),
        sql::check_text("deployer id", p.deployer_id, max, false),
        sql::check_text("bank name", p.bank_name, max, false),
        sql::check_text("bank account", p.bank_account, max, false),
        sql::check_text("account name", p.account_name, max, false),
        check_rate("transaction fee", p.txn_fee_bp), check_rate("recharge fee", p.recharge_fee_bp),
        check_rate("deployer share", p.deployer_share_bp)}) {
    if (!s.is_ok()) return s;
  }
  // CSV fields of the bank file must not need quoting.
  for (const std::string* f : {&p.bank_name, &p.bank_account, &p.account_name, &p.merchant_id}) {
    if (f->find_first_of(",\"") != std::string::npos) {
      return Status(Errc::kInvalidArgument, "merchant ids and bank fields may not hold , or \"");
    }
  }
  if (p.kind > MerchantKind::kDesk) return Status(Errc::kInvalidArgument, "unknown merchant kind");
  if (p.cycle > SettlementCycle::kMonthly) {
    return Status(Errc::kInvalidArgument, "unknown settlement cycle");
  }
  if (p.points_funding > PointsFunding::kPrepaid) {
    return Status(Errc::kInvalidArgument, "unknown points funding");
  }
  if (p.points_coefficient_milli < 0 || p.points_coefficient_milli > 100'000) {
    return Status(Errc::kInvalidArgument, "points coefficient must be 0..100000 milli");
  }
  if (p.deployer_id.empty() != (p.deployer_share_bp == 0)) {
    return Status(Errc::kInvalidArgument, "a deployer share needs a deployer, and back");
  }
  if (p.start_date && !dates::valid(*p.start_date)) {
    return Status(Errc::kInvalidArgument, "start date is not a date");
  }
  return Status::ok();
}

Status Merchants::write(const MerchantParams& p, bool create) {
  if (!p.deployer_id.empty()) {
    auto d = deployer(p.deployer_id);
    if (!d.is_ok()) return d.status();
  }
  if (create) {
    if (cache_.size() >= options_.merchants_max) {
      return Status(Errc::kTooLarge,
                    "merchant limit of " + std::to_string(options_.merchants_max) + " reached");
    }
    const int start = p.start_date.value_or(calendar_.today_yyyymmdd());
    Status s = store_
                   .query(
                       "INSERT INTO merchants(merchant_id, name, kind, cycle, txn_fee_bp, "
                       "recharge_fee_bp, deployer_id, deployer_share_bp, bank_name, "
                       "bank_account, account_name, points_coefficient_milli, points_funding, "
                       "recharge_enabled, start_date, settled_through, created_at_us) VALUES "
                       "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
                       "?17)")
                   .bind(1, p.merchant_id)
                   .bind(2, p.name)
                   .bind(3, static_cast<std::int64_t>(p.kind))
                   .bind(4, static_cast<std::int64_t>(p.cycle))
                   .bind(5, p.txn_fee_bp)
                   .bind(6, p.recharge_fee_bp)
                   .bind(7, p.deployer_id)
                   .bind(8, p.deployer_share_bp)
                   .bind(9, p.bank_name)
                   .bind(10, p.bank_account)
                   .bind(11, p.account_name)
                   .bind(12, p.points_coefficient_milli)
                   .bind(13, static_cast<std::int64_t>(p.points_funding))
                   .bind(14, std::int64_t{p.recharge_enabled ? 1 : 0})
                   .bind(15, std::int64_t{start})
                   .bind(16, std::int64_t{dates::add_days(start, -1)})
                   .bind(17, calendar_.now_us())
                   .run();
    if (s.code() == Errc::kDuplicate) {
      return Status(Errc::kDuplicate, "merchant " + p.merchant_id + " exists");
    }
    if (!s.is_ok()) return s;
    return ledger_.open_account(account::payable(p.merchant_id));
  }
  auto q = store_.query(
      "UPDATE merchants SET name = ?2, kind = ?3, cycle = ?4, txn_fee_bp = ?5, "
      "recharge_fee_bp = ?6, deployer_id = ?7, deployer_share_bp = ?8, bank_name = ?9, "
      "bank_account = ?10, account_name = ?11, points_coefficient_milli = ?12, "
      "points_funding = ?13, recharge_enabled = ?14 WHERE merchant_id = ?1 RETURNING 1");
  q.bind(1, p.merchant_id)
      .bind(2, p.name)
      .bind(3, static_cast<std::int64_t>(p.kind))
      .bind(4, static_cast<std::int64_t>(p.cycle))
      .bind(5, p.txn_fee_bp)
      .bind(6, p.recharge_fee_bp)
      .bind(7, p.deployer_id)
      .bind(8, p.deployer_share_bp)
      .bind(9, p.bank_name)
      .bind(10, p.bank_account)
      .bind(11, p.account_name)
      .bind(12, p.points_coefficient_milli)
      .bind(13, static_cast<std::int64_t>(p.points_funding))
      .bind(14, std::int64_t{p.recharge_enabled ? 1 : 0});
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status(Errc::kNotFound, "no merchant " + p.merchant_id);
  return Status::ok();
}

Status Merchants::create(const Session& by, const MerchantParams& p) {
  Status s = users_.audited(by, "create_merchant", p.merchant_id, [&]() -> Status {
    if (Status st = users_.require(by, {Role::kAdmin}, "create_merchant"); !st.is_ok()) return st;
    if (Status st = check_params(p); !st.is_ok()) return st;
    return write(p, true);
  });
  if (Status r = load(); !r.is_ok()) return r;
  return s;
}

Status Merchants::update(const Session& by, const MerchantParams& p) {
  Status s = users_.audited(by, "update_merchant", p.merchant_id, [&]() -> Status {
    if (Status st = users_.require(by, {Role::kAdmin}, "update_merchant"); !st.is_ok()) return st;
    if (Status st = check_params(p); !st.is_ok()) return st;
    return write(p, false);
  });
  if (Status r = load(); !r.is_ok()) return r;
  return s;
}

Status Merchants::set_active(const Session& by, const std::string& merchant_id, bool active) {
  return users_.audited(
      by, active ? "activate_merchant" : "deactivate_merchant", merchant_id, [&]() -> Status {
        if (Status st = users_.require(by, {Role::kAdmin}, "set_active"); !st.is_ok()) {
          return st;
        }
        auto q = store_.query(
            "UPDATE merchants SET active = ?2 WHERE merchant_id = ?1 "
            "RETURNING 1");
        q.bind(1, merchant_id).bind(2, std::int64_t{active ? 1 : 0});
        auto row = q.step();
        if (!row.is_ok()) return row.status();
        if (!*row) return Status(Errc::kNotFound, "no merchant " + merchant_id);
        return Status::ok();
      });
}

Status Merchants::create_deployer(const Session& by, const DeployerParams& p) {
  return users_.audited(by, "create_deployer", p.deployer_id, [&]() -> Status {
    if (Status st = users_.require(by, {Role::kAdmin}, "create_deployer"); !st.is_ok()) return st;
    const std::size_t max = options_.text_max_bytes;
    for (Status st : {sql::check_text("deployer id", p.deployer_id, max, true),
                      sql::check_text("deployer name", p.name, max, true),
                      sql::check_text("bank name", p.bank_name, max, false),
                      sql::check_text("bank account", p.bank_account, max, false),
                      sql::check_text("account name", p.account_name, max, false)}) {
      if (!st.is_ok()) return st;
    }
    for (const std::string* f : {&p.deployer_id, &p.bank_name, &p.bank_account, &p.account_name}) {
      if (f->find_first_of(",\"") != std::string::npos) {
        return Status(Errc::kInvalidArgument, "deployer ids and bank fields may not hold , or \"");
      }
    }
    Status s = store_
                   .query(
                       "INSERT INTO deployers(deployer_id, name, bank_name, bank_account, "
                       "account_name) VALUES (?1, ?2, ?3, ?4, ?5)")
                   .bind(1, p.deployer_id)
                   .bind(2, p.name)
                   .bind(3, p.bank_name)
                   .bind(4, p.bank_account)
                   .bind(5, p.account_name)
                   .run();
    if (s.code() == Errc::kDuplicate) {
      return Status(Errc::kDuplicate, "deployer " + p.deployer_id + " exists");
    }
    if (!s.is_ok()) return s;
    return ledger_.open_account(account::deployer_payable(p.deployer_id));
  });
}

Result<DeployerParams> Merchants::deployer(const std::string& id) const {
  auto q = store_.query(
      "SELECT deployer_id, name, bank_name, bank_account, account_name FROM deployers "
      "WHERE deployer_id = ?1");
  q.bind(1, id);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status(Errc::kNotFound, "no deployer " + id);
  return DeployerParams{q.column_text(0), q.column_text(1), q.column_text(2), q.column_text(3),
                        q.column_text(4)};
}

Result<MerchantRecord> Merchants::read(const std::string& merchant_id) const {
  auto q = store_.query(std::string(kMerchantColumns) + "WHERE merchant_id = ?1");
  q.bind(1, merchant_id);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status(Errc::kNotFound, "no merchant " + merchant_id);
  return merchant_from_row(q);
}

Result<MerchantRecord> Merchants::get(const Session& by, const std::string& merchant_id) const {
  if (Status s = users_.require_merchant(
          by, merchant_id,
          {Role::kAdmin, Role::kFinance, Role::kMerchantOwner, Role::kMerchantOperator},
          "view merchant");
      !s.is_ok()) {
    return s;
  }
  return read(merchant_id);
}

Result<std::vector<MerchantRecord>> Merchants::list(const Session& by) const {
  if (Status s = users_.require(
          by, {Role::kAdmin, Role::kFinance, Role::kMerchantOwner, Role::kMerchantOperator},
          "list merchants");
      !s.is_ok()) {
    return s;
  }
  std::vector<MerchantRecord> out;
  if (!staff(by.role)) {
    auto m = read(by.merchant_id);
    if (!m.is_ok()) return m.status();
    out.push_back(std::move(m).value());
    return out;
  }
  auto q = store_.query(std::string(kMerchantColumns) + "ORDER BY merchant_id");
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    out.push_back(merchant_from_row(q));
  }
}

Result<protocol::PsamImage> Merchants::register_terminal(const Session& by,
                                                         const TerminalParams& params) {
  return users_.audited(
      by, "register_terminal", params.operator_id, [&]() -> Result<protocol::PsamImage> {
        if (Status s = users_.require(by, {Role::kAdmin}, "register_terminal"); !s.is_ok()) {
          return s;
        }
        if (find(params.operator_id) == nullptr) {
          return Status(Errc::kNotFound,
                        "no merchant " + params.operator_id + " to own the terminal");
        }
        return issuance_.register_terminal(params);
      });
}

Result<std::vector<TerminalRecord>> Merchants::terminals(const Session& by,
                                                         const std::string& merchant_id) const {
  if (Status s = users_.require_merchant(
          by, merchant_id,
          {Role::kAdmin, Role::kFinance, Role::kMerchantOwner, Role::kMerchantOperator},
          "list terminals");
      !s.is_ok()) {
    return s;
  }
  auto all = issuance_.list_terminals(100'000);
  if (!all.is_ok()) return all.status();
  std::vector<TerminalRecord> out;
  for (TerminalRecord& t : *all) {
    if (t.operator_id == merchant_id) out.push_back(std::move(t));
  }
  return out;
}

Result<std::vector<UserRecord>> Merchants::users_of(const Session& by,
                                                    const std::string& merchant_id) const {
  if (Status s = users_.require_merchant(by, merchant_id, {Role::kAdmin, Role::kMerchantOwner},
                                         "list users");
      !s.is_ok()) {
    return s;
  }
  auto q = store_.query(
      "SELECT username, role, merchant_id, active FROM users WHERE merchant_id = ?1 "
      "ORDER BY username");
  q.bind(1, merchant_id);
  std::vector<UserRecord> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    out.push_back({q.column_text(0), static_cast<Role>(q.column_int64(1)), q.column_text(2),
                   q.column_int64(3) != 0});
  }
}

// ---- quota ---------------------------------------------------------------------------------

Status Merchants::top_up_quota(const Session& by, const std::string& merchant_id,
                               std::int64_t amount_fen) {
  return users_.audited(
      by, "top_up_quota", merchant_id + " " + std::to_string(amount_fen), [&]() -> Status {
        if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "top_up_quota");
            !s.is_ok()) {
          return s;
        }
        auto m = read(merchant_id);
        if (!m.is_ok()) return m.status();
        if (!m->params.recharge_enabled) {
          return Status(Errc::kRejected, "merchant " + merchant_id + " does not sell recharges");
        }
        if (amount_fen <= 0 || m->quota_fen + amount_fen > options_.quota_max_fen) {
          return Status(Errc::kInvalidArgument,
                        "quota top-up must be positive and keep the quota within " +
                            std::to_string(options_.quota_max_fen) + " fen");
        }
        if (Status s = store_
                           .query("UPDATE merchants SET quota_fen = quota_fen + ?2 "
                                  "WHERE merchant_id = ?1")
                           .bind(1, merchant_id)
                           .bind(2, amount_fen)
                           .run();
            !s.is_ok()) {
          return s;
        }
        auto posted = ledger_.post({"quota_top_up",
                                    "merchant " + merchant_id,
                                    {{std::string(account::kIssuerCash), amount_fen},
                                     {std::string(account::kRechargeQuota), -amount_fen}}});
        return posted.status();
      });
}

Status Merchants::use_quota(const std::string& merchant_id, std::int64_t amount_fen) {
  auto q = store_.query(
      "UPDATE merchants SET quota_fen = quota_fen - ?2 WHERE merchant_id = ?1 AND "
      "quota_fen >= ?2 RETURNING quota_fen");
  q.bind(1, merchant_id).bind(2, amount_fen);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) {
    auto m = read(merchant_id);
    if (!m.is_ok()) return m.status();
    return Status(Errc::kInsufficientFunds, "recharge quota of " + merchant_id +
                                                " is exhausted: " + std::to_string(m->quota_fen) +
                                                " fen left, " + std::to_string(amount_fen) +
                                                " asked; the operator must top it up");
  }
  return Status::ok();
}

Status Merchants::restore_quota(const std::string& merchant_id, std::int64_t amount_fen) {
  return store_.query("UPDATE merchants SET quota_fen = quota_fen + ?2 WHERE merchant_id = ?1")
      .bind(1, merchant_id)
      .bind(2, amount_fen)
      .run();
}

Result<std::int64_t> Merchants::quota_sum_fen() const {
  return sql::scalar(store_, "SELECT coalesce(sum(quota_fen), 0) FROM merchants");
}

// ---- points --------------------------------------------------------------------------------

Status Merchants::buy_points(const Session& by, const std::string& merchant_id,
                             std::int64_t points) {
  return users_.audited(
      by, "buy_points", merchant_id + " " + std::to_string(points), [&]() -> Status {
        if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "buy_points");
            !s.is_ok()) {
          return s;
        }
        auto m = read(merchant_id);
        if (!m.is_ok()) return m.status();
        if (m->params.points_funding != PointsFunding::kPrepaid) {
          return Status(Errc::kRejected, "merchant " + merchant_id + " is on post-paid points");
        }
        if (points <= 0 || points > 1'000'000'000) {
          return Status(Errc::kInvalidArgument, "points must be 1..1e9");
        }
        if (Status s = store_
                           .query("UPDATE merchants SET points_stock = points_stock + ?2 "
                                  "WHERE merchant_id = ?1")
                           .bind(1, merchant_id)
                           .bind(2, points)
                           .run();
            !s.is_ok()) {
          return s;
        }
        return ledger_
            .post({"points_bought",
                   "merchant " + merchant_id,
                   {{std::string(account::kIssuerCash), points * kPointValueFen},
                    {std::string(account::kPointsPrepaid), -points * kPointValueFen}}})
            .status();
      });
}

Result<std::int64_t> Merchants::points_stock_sum() const {
  return sql::scalar(store_, "SELECT coalesce(sum(points_stock), 0) FROM merchants");
}

Status Merchants::set_card_levels(const Session& by, std::vector<CardLevel> levels) {
  Status s = users_.audited(by, "set_card_levels", std::to_string(levels.size()), [&]() -> Status {
    if (Status st = users_.require(by, {Role::kAdmin}, "set_card_levels"); !st.is_ok()) return st;
    if (levels.empty() || levels.size() > options_.levels_max) {
      return Status(Errc::kInvalidArgument,
                    "1.." + std::to_string(options_.levels_max) + " card levels");
    }
    std::sort(levels.begin(), levels.end(), [](const CardLevel& a, const CardLevel& b) {
      return a.min_spend_fen < b.min_spend_fen;
    });
    if (levels.front().min_spend_fen != 0) {
      return Status(Errc::kInvalidArgument, "the first card level must start at 0 spend");
    }
    for (const CardLevel& l : levels) {
      if (l.points_pct < 0 || l.points_pct > 1'000) {
        return Status(Errc::kInvalidArgument, "points multiplier must be 0..1000 percent");
      }
      if (Status st = sql::check_text("level name", l.name, options_.text_max_bytes, true);
          !st.is_ok()) {
        return st;
      }
    }
    if (Status st = store_.exec("DELETE FROM card_levels"); !st.is_ok()) return st;
    for (const CardLevel& l : levels) {
      Status st = store_
                      .query(
                          "INSERT INTO card_levels(level, name, min_spend_fen, points_pct) "
                          "VALUES (?1, ?2, ?3, ?4)")
                      .bind(1, std::int64_t{l.level})
                      .bind(2, l.name)
                      .bind(3, l.min_spend_fen)
                      .bind(4, l.points_pct)
                      .run();
      if (st.code() == Errc::kDuplicate) {
        return Status(Errc::kInvalidArgument, "card level " + std::to_string(l.level) + " twice");
      }
      if (!st.is_ok()) return st;
    }
    return Status::ok();
  });
  if (Status r = load(); !r.is_ok()) return r;
  return s;
}

int Merchants::level_for(std::int64_t spend_fen) const {
  int level = 0;
  for (const CardLevel& l : levels_) {
    if (spend_fen >= l.min_spend_fen) level = l.level;
  }
  return level;
}

Status Merchants::award_points(const SwipeFacts& f, std::int64_t swipe_id) {
  const MerchantParams* m = find(f.terminal.operator_id);
  if (m == nullptr || m->points_coefficient_milli == 0 || f.amount_fen <= 0) {
    return Status::ok();
  }
  auto before = points(f.card.serial);
  if (!before.is_ok()) return before.status();
  std::int64_t pct = 100;
  for (const CardLevel& l : levels_) {
    if (l.level == before->level) pct = l.points_pct;
  }
  // Ingest bounds an amount to the purse's 32 bits, the coefficient is at most 100,000 and the
  // percentage 1,000: the product stays below 2^63.
  const std::int64_t product = f.amount_fen * m->points_coefficient_milli * pct;
  const std::int64_t earned =
      std::min<std::int64_t>(product / (100 * 1'000 * 100), options_.points_per_purchase_max);
  const std::int64_t spend = before->spend_fen + f.amount_fen;
  if (Status s = store_.query("INSERT INTO card_ext(serial) VALUES (?1) ON CONFLICT DO NOTHING")
                     .bind_blob(1, f.card.serial)
                     .run();
      !s.is_ok()) {
    return s;
  }
  if (Status s = store_
                     .query("UPDATE card_ext SET points = points + ?2, spend_fen = ?3, "
                            "level = ?4 WHERE serial = ?1")
                     .bind_blob(1, f.card.serial)
                     .bind(2, earned)
                     .bind(3, spend)
                     .bind(4, std::int64_t{level_for(spend)})
                     .run();
      !s.is_ok()) {
    return s;
  }
  if (earned == 0) return Status::ok();
  // Prepaid stock first, the rest post-paid.
  std::int64_t prepaid = 0;
  if (m->points_funding == PointsFunding::kPrepaid) {
    auto stock = read(m->merchant_id);
    if (!stock.is_ok()) return stock.status();
    prepaid = std::min(earned, stock->points_stock);
    if (Status s = store_
                       .query("UPDATE merchants SET points_stock = points_stock - ?2 "
                              "WHERE merchant_id = ?1")
                       .bind(1, m->merchant_id)
                       .bind(2, prepaid)
                       .run();
        !s.is_ok()) {
      return s;
    }
  }
  const std::int64_t postpaid = earned - prepaid;
  if (Status s = store_
                     .query("INSERT INTO points_moves(serial, merchant_id, kind, points, "
                            "prepaid_points, ref, settlement_date, at_us) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                     .bind_blob(1, f.card.serial)
                     .bind(2, m->merchant_id)
                     .bind(3, std::int64_t{kMoveAward})
                     .bind(4, earned)
                     .bind(5, prepaid)
                     .bind(6, "swipe " + std::to_string(swipe_id))
                     .bind(7, std::int64_t{calendar_.today_yyyymmdd()})
                     .bind(8, calendar_.now_us())
                     .run();
      !s.is_ok()) {
    return s;
  }
  Posting p{"points_award", "swipe " + f.ref, {}};
  if (prepaid > 0)
    p.entries.push_back({std::string(account::kPointsPrepaid), prepaid * kPointValueFen});
  if (postpaid > 0) {
    p.entries.push_back({std::string(account::kPointsReceivable), postpaid * kPointValueFen});
  }
  p.entries.push_back({std::string(account::kPointsLiability), -earned * kPointValueFen});
  return ledger_.post(p).status();
}

Status Merchants::take_points(const Serial8& card, std::int64_t pts, int move_kind,
                              const std::string& merchant_id, const std::string& ref) {
  if (pts <= 0) return Status(Errc::kInvalidArgument, "points to redeem must be positive");
  auto q = store_.query(
      "UPDATE card_ext SET points = points - ?2 WHERE serial = ?1 AND points >= ?2 "
      "RETURNING points");
  q.bind_blob(1, card).bind(2, pts);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) {
    auto have = points(card);
    if (!have.is_ok()) return have.status();
    return Status(Errc::kInsufficientFunds, "card " + to_hex(card) + " has " +
                                                std::to_string(have->points) + " points, " +
                                                std::to_string(pts) + " asked");
  }
  return store_
      .query(
          "INSERT INTO points_moves(serial, merchant_id, kind, points, prepaid_points, ref, "
          "settlement_date, at_us) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7)")
      .bind_blob(1, card)
      .bind(2, merchant_id)
      .bind(3, std::int64_t{move_kind})
      .bind(4, pts)
      .bind(5, ref)
      .bind(6, std::int64_t{calendar_.today_yyyymmdd()})
      .bind(7, calendar_.now_us())
      .run();
}

Result<std::int64_t> Merchants::redeem_for_gift(const Session& by, const std::string& merchant_id,
                                                const Serial8& card, std::int64_t pts) {
  return users_.audited(
      by, "redeem_points", merchant_id + " " + to_hex(card) + " " + std::to_string(pts),
      [&]() -> Result<std::int64_t> {
        if (Status s = users_.require_merchant(
                by, merchant_id,
                {Role::kAdmin, Role::kFinance, Role::kMerchantOwner, Role::kMerchantOperator},
                "redeem_points");
            !s.is_ok()) {
          return s;
        }
        if (find(merchant_id) == nullptr)
          return Status(Errc::kNotFound, "no merchant " + merchant_id);
        if (Status s = take_points(card, pts, kMoveGift, merchant_id, "gift"); !s.is_ok()) {
          return s;
        }
        auto posted =
            ledger_.post({"points_gift",
                          "merchant " + merchant_id + " card " + to_hex(card),
                          {{std::string(account::kPointsLiability), pts * kPointValueFen},
                           {std::string(account::kPointsRedeemedDue), -pts * kPointValueFen}}});
        if (!posted.is_ok()) return posted.status();
        auto left = points(card);
        if (!left.is_ok()) return left.status();
        return left->points;
      });
}

Result<PointsBalance> Merchants::points(const Serial8& card) const {
  auto q = store_.query("SELECT points, level, spend_fen FROM card_ext WHERE serial = ?1");
  q.bind_blob(1, card);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return PointsBalance{};
  return PointsBalance{q.column_int64(0), static_cast<int>(q.column_int64(1)), q.column_int64(2)};
}

Result<std::int64_t> Merchants::points_sum() const {
  return sql::scalar(store_, "SELECT coalesce(sum(points), 0) FROM card_ext");
}

}  // namespace citycard::backend
