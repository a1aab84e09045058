#include "citycard/backend/settlement.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <tuple>

#include "citycard/backend/money.h"
#include "citycard/backend/recharge.h"
#include "dates.h"
#include "sql_util.h"

namespace citycard::backend {

using protocol::TerminalId;

namespace {

constexpr const char* kLineColumns =
    "SELECT id, batch_id, party_kind, party_id, period_from, period_to, txn_count, gross_fen, "
    "fee_fen, deployer_id, deployer_share_fen, recharge_count, recharge_fen, commission_fen, "
    "points_redeemed_fen, points_cost_fen, net_fen, bank_name, bank_account, account_name, "
    "payout, payout_ref, qr_count, qr_fen, refund_count, refund_fen FROM settlement_lines ";

SettlementLine line_from_row(const Query& q) {
  SettlementLine l;
  l.id = q.column_int64(0);
  l.batch_id = q.column_int64(1);
  l.party_kind = static_cast<PartyKind>(q.column_int64(2));
  l.party_id = q.column_text(3);
  l.period_from = static_cast<int>(q.column_int64(4));
  l.period_to = static_cast<int>(q.column_int64(5));
  l.txn_count = q.column_int64(6);
  l.gross_fen = q.column_int64(7);
  l.fee_fen = q.column_int64(8);
  l.deployer_id = q.column_text(9);
  l.deployer_share_fen = q.column_int64(10);
  l.recharge_count = q.column_int64(11);
  l.recharge_fen = q.column_int64(12);
  l.commission_fen = q.column_int64(13);
  l.points_redeemed_fen = q.column_int64(14);
  l.points_cost_fen = q.column_int64(15);
  l.net_fen = q.column_int64(16);
  l.bank_name = q.column_text(17);
  l.bank_account = q.column_text(18);
  l.account_name = q.column_text(19);
  l.payout = static_cast<PayoutState>(q.column_int64(20));
  l.payout_ref = q.column_text(21);
  l.qr_count = q.column_int64(22);
  l.qr_fen = q.column_int64(23);
  l.refund_count = q.column_int64(24);
  l.refund_fen = q.column_int64(25);
  return l;
}

int period_end(SettlementCycle cycle, int from) {
  switch (cycle) {
    case SettlementCycle::kDaily:
      return from;
    case SettlementCycle::kWeekly:
      return dates::add_days(dates::week_first(from), 6);
    case SettlementCycle::kMonthly:
      return dates::month_last(from);
  }
  return from;
}

// Per (merchant, day) totals, read once for a whole date range.
using DayTotals = std::map<std::pair<std::string, int>, std::pair<std::int64_t, std::int64_t>>;

Result<DayTotals> day_totals(Store& store, const char* sql, int from, int to) {
  auto q = store.query(sql);
  q.bind(1, std::int64_t{from}).bind(2, std::int64_t{to});
  DayTotals out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    out[{q.column_text(0), static_cast<int>(q.column_int64(1))}] = {q.column_int64(2),
                                                                    q.column_int64(3)};
  }
}

constexpr const char* kSwipeDays =
    "SELECT operator_id, settlement_date, count(*), sum(amount_fen) FROM swipes "
    "WHERE settlement_date BETWEEN ?1 AND ?2 GROUP BY operator_id, settlement_date";
constexpr const char* kRechargeDays =
    "SELECT merchant_id, done_date, count(*), sum(amount_fen) FROM recharge_orders "
    "WHERE channel = 1 AND state = 3 AND done_date BETWEEN ?1 AND ?2 "
    "GROUP BY merchant_id, done_date";
// QR payments (qr.h) are the operator's takings like its card swipes, in qr_payable.
constexpr const char* kQrDays =
    "SELECT operator_id, settlement_date, count(*), sum(amount_fen) FROM qr_payments "
    "WHERE settlement_date BETWEEN ?1 AND ?2 GROUP BY operator_id, settlement_date";

std::pair<std::int64_t, std::int64_t> sum_period(const DayTotals& t, const std::string& who,
                                                 int from, int to) {
  std::pair<std::int64_t, std::int64_t> out{0, 0};
  for (auto it = t.lower_bound({who, from});
       it != t.end() && it->first.first == who && it->first.second <= to; ++it) {
    out.first += it->second.first;
    out.second += it->second.second;
  }
  return out;
}

bool approved(BatchState s) {
  return s == BatchState::kApproved || s == BatchState::kFileWritten ||
         s == BatchState::kReconciled;
}

// The line id in a payout reference CC<batch>-<line>-<attempt>; 0 when it is not one.
std::int64_t payout_line_of(const std::string& ref) {
  const std::size_t a = ref.find('-'), b = ref.rfind('-');
  if (ref.rfind("CC", 0) != 0 || a == std::string::npos || b == a) return 0;
  std::int64_t v = 0;
  for (std::size_t i = a + 1; i < b; ++i) {
    if (ref[i] < '0' || ref[i] > '9' || v > 1'000'000'000'000LL) return 0;
    v = v * 10 + (ref[i] - '0');
  }
  return v;
}

constexpr const char* kApprovedBatches =
    "(SELECT id FROM settlement_batches WHERE state IN (1, 2, 3))";

}  // namespace

const char* batch_state_name(BatchState s) {
  switch (s) {
    case BatchState::kDraft:
      return "draft";
    case BatchState::kApproved:
      return "approved";
    case BatchState::kFileWritten:
      return "file_written";
    case BatchState::kReconciled:
      return "reconciled";
    case BatchState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

const char* difference_kind_name(DifferenceKind k) {
  switch (k) {
    case DifferenceKind::kMissingInBank:
      return "missing_in_bank";
    case DifferenceKind::kMissingInBooks:
      return "missing_in_books";
    case DifferenceKind::kAmountDiffers:
      return "amount_differs";
    case DifferenceKind::kPayoutReturned:
      return "payout_returned";
  }
  return "unknown";
}

// ---- preparing -----------------------------------------------------------------------------

Status Settlement::insert_line(std::int64_t batch_id, SettlementLine& l) {
  if (Status s = store_
                     .query("INSERT INTO settlement_lines(batch_id, party_kind, party_id, "
                            "period_from, period_to, txn_count, gross_fen, fee_fen, deployer_id, "
                            "deployer_share_fen, recharge_count, recharge_fen, commission_fen, "
                            "points_redeemed_fen, points_cost_fen, net_fen, bank_name, "
                            "bank_account, account_name, payout, qr_count, qr_fen) VALUES (?1, ?2, "
                            "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, "
                            "?18, ?19, 0, ?20, ?21)")
                     .bind(1, batch_id)
                     .bind(2, static_cast<std::int64_t>(l.party_kind))
                     .bind(3, l.party_id)
                     .bind(4, std::int64_t{l.period_from})
                     .bind(5, std::int64_t{l.period_to})
                     .bind(6, l.txn_count)
                     .bind(7, l.gross_fen)
                     .bind(8, l.fee_fen)
                     .bind(9, l.deployer_id)
                     .bind(10, l.deployer_share_fen)
                     .bind(11, l.recharge_count)
                     .bind(12, l.recharge_fen)
                     .bind(13, l.commission_fen)
                     .bind(14, l.points_redeemed_fen)
                     .bind(15, l.points_cost_fen)
                     .bind(16, l.net_fen)
                     .bind(17, l.bank_name)
                     .bind(18, l.bank_account)
                     .bind(19, l.account_name)
                     .bind(20, l.qr_count)
                     .bind(21, l.qr_fen)
                     .run();
      !s.is_ok()) {
    return s;
  }
  l.id = store_.last_insert_rowid();
  l.batch_id = batch_id;
  return Status::ok();
}

Result<SettlementBatch> Settlement::prepare(const Session& by) {
  std::int64_t batch_id = 0;
  auto made = users_.audited(by, "prepare_settlement", "", [&]() -> Result<std::int64_t> {
    if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "prepare_settlement");
        !s.is_ok()) {
      return s;
    }
    auto draft = sql::scalar(store_, "SELECT id FROM settlement_batches WHERE state = 0", 0);
    if (!draft.is_ok()) return draft.status();
    if (*draft != 0) {
      return Status(Errc::kRejected, "settlement batch " + std::to_string(*draft) +
                                         " is a draft awaiting review; approve or cancel it first");
    }
    const int today = calendar_.today_yyyymmdd();
    if (Status s = store_
                       .query("INSERT INTO settlement_batches(business_date, state, created_by, "
                              "created_at_us) VALUES (?1, 0, ?2, ?3)")
                       .bind(1, std::int64_t{today})
                       .bind(2, by.user)
                       .bind(3, calendar_.now_us())
                       .run();
        !s.is_ok()) {
      return s;
    }
    const std::int64_t id = store_.last_insert_rowid();

    // Every merchant's settled_through, and the widest range any period can need.
    std::vector<std::pair<std::string, int>> through;
    {
      auto q =
          store_.query("SELECT merchant_id, settled_through FROM merchants ORDER BY merchant_id");
      for (;;) {
        auto row = q.step();
        if (!row.is_ok()) return row.status();
        if (!*row) break;
        through.emplace_back(q.column_text(0), static_cast<int>(q.column_int64(1)));
      }
    }
    int earliest = today;
    for (const auto& [m, t] : through) earliest = std::min(earliest, dates::add_days(t, 1));
    auto swipes = day_totals(store_, kSwipeDays, earliest, today);
    if (!swipes.is_ok()) return swipes.status();
    auto recharges = day_totals(store_, kRechargeDays, earliest, today);
    if (!recharges.is_ok()) return recharges.status();
    auto qr_days = day_totals(store_, kQrDays, earliest, today);
    if (!qr_days.is_ok()) return qr_days.status();

    std::size_t lines = 0;
    bool more = false;
    for (const auto& [merchant_id, settled] : through) {
      const MerchantParams* m = merchants_.find(merchant_id);
      if (m == nullptr) return Status(Errc::kInternal, "merchant cache misses " + merchant_id);
      for (int from = dates::add_days(settled, 1);;) {
        const int to = period_end(m->cycle, from);
        if (to >= today) break;
        if (lines >= options_.lines_max) {
          more = true;
          break;
        }
        SettlementLine l;
        l.party_kind = PartyKind::kMerchant;
        l.party_id = merchant_id;
        l.period_from = from;
        l.period_to = to;
        std::tie(l.txn_count, l.gross_fen) = sum_period(*swipes, merchant_id, from, to);
        std::tie(l.recharge_count, l.recharge_fen) = sum_period(*recharges, merchant_id, from, to);
        std::tie(l.qr_count, l.qr_fen) = sum_period(*qr_days, merchant_id, from, to);
        l.fee_fen = rate_of(l.gross_fen + l.qr_fen, m->txn_fee_bp);
        l.deployer_id = m->deployer_id;
        l.deployer_share_fen = rate_of(l.fee_fen, m->deployer_share_bp);
        l.commission_fen = rate_of(l.recharge_fen, m->recharge_fee_bp);
        l.bank_name = m->bank_name;
        l.bank_account = m->bank_account;
        l.account_name = m->account_name;
        if (Status s = insert_line(id, l); !s.is_ok()) return s;
        // Points: gifts redeemed there are all paid; post-paid awards are charged while the
        // payout covers them, oldest first.
        std::vector<std::pair<std::int64_t, std::int64_t>> moves;  // id, fen
        {
          auto q = store_.query(
              "SELECT id, kind, points - prepaid_points FROM points_moves WHERE merchant_id = ?1 "
              "AND line_id IS NULL AND kind IN (0, 1) AND settlement_date <= ?2 ORDER BY id");
          q.bind(1, merchant_id).bind(2, std::int64_t{to});
          for (;;) {
            auto row = q.step();
            if (!row.is_ok()) return row.status();
            if (!*row) break;
            const std::int64_t fen = q.column_int64(2) * kPointValueFen;
            if (q.column_int64(1) == Merchants::kMoveGift) {
              l.points_redeemed_fen += fen;
              moves.emplace_back(q.column_int64(0), fen);
            } else if (fen > 0) {
              moves.emplace_back(q.column_int64(0), -fen);  // negative: a cost, decided below
            }
          }
        }
        std::int64_t room =
            l.gross_fen + l.qr_fen - l.fee_fen + l.commission_fen + l.points_redeemed_fen;
        // POS refunds (pos_refund.h) made up to the period's end, oldest first, while the
        // payout covers them (the rest waits for a later period, as post-paid points do).
        {
          std::vector<std::pair<std::int64_t, std::int64_t>> refunds;  // rowid, fen
          auto q = store_.query(
              "SELECT rowid, amount_fen FROM pos_refunds WHERE merchant_id = ?1 AND line_id IS "
              "NULL AND settlement_date <= ?2 ORDER BY rowid");
          q.bind(1, merchant_id).bind(2, std::int64_t{to});
          for (;;) {
            auto row = q.step();
            if (!row.is_ok()) return row.status();
            if (!*row) break;
            refunds.emplace_back(q.column_int64(0), q.column_int64(1));
          }
          for (const auto& [rowid, fen] : refunds) {
            if (fen > room) break;  // oldest first: a later one does not jump the queue
            room -= fen;
            ++l.refund_count;
            l.refund_fen += fen;
            if (Status s = store_.query("UPDATE pos_refunds SET line_id = ?2 WHERE rowid = ?1")
                               .bind(1, rowid)
                               .bind(2, l.id)
                               .run();
                !s.is_ok()) {
              return s;
            }
          }
        }
        for (const auto& [move_id, fen] : moves) {
          if (fen < 0) {
            if (-fen > room) continue;  // waits for a later period
            room += fen;
            l.points_cost_fen -= fen;
          }
          if (Status s = store_.query("UPDATE points_moves SET line_id = ?2 WHERE id = ?1")
                             .bind(1, move_id)
                             .bind(2, l.id)
                             .run();
              !s.is_ok()) {
            return s;
          }
        }
        l.net_fen = room;
        if (Status s = store_
                           .query("UPDATE settlement_lines SET points_redeemed_fen = ?2, "
                                  "points_cost_fen = ?3, net_fen = ?4, refund_count = ?5, "
                                  "refund_fen = ?6 WHERE id = ?1")
                           .bind(1, l.id)
                           .bind(2, l.points_redeemed_fen)
                           .bind(3, l.points_cost_fen)
                           .bind(4, l.net_fen)
                           .bind(5, l.refund_count)
                           .bind(6, l.refund_fen)
                           .run();
            !s.is_ok()) {
          return s;
        }
        ++lines;
        from = dates::add_days(to, 1);
      }
    }
    // Deployers: what their payables hold now (shares of earlier batches).
    {
      auto owed = ledger_.balances(account::kDeployerPayablePrefix);
      if (!owed.is_ok()) return owed.status();
      for (const AccountBalance& a : *owed) {
        if (a.balance_fen >= 0) continue;
        const std::string deployer_id = a.account.substr(account::kDeployerPayablePrefix.size());
        auto d = merchants_.deployer(deployer_id);
        if (!d.is_ok()) return d.status();
        SettlementLine l;
        l.party_kind = PartyKind::kDeployer;
        l.party_id = deployer_id;
        l.period_from = l.period_to = today;
        l.gross_fen = l.net_fen = -a.balance_fen;
        l.bank_name = d->bank_name;
        l.bank_account = d->bank_account;
        l.account_name = d->account_name;
        if (Status s = insert_line(id, l); !s.is_ok()) return s;
      }
    }
    if (Status s = store_.query("UPDATE settlement_batches SET more_due = ?2 WHERE id = ?1")
                       .bind(1, id)
                       .bind(2, std::int64_t{more ? 1 : 0})
                       .run();
        !s.is_ok()) {
      return s;
    }
    return id;
  });
  if (!made.is_ok()) return made.status();
  batch_id = *made;
  return read_batch(batch_id, "");
}

// ---- reading -------------------------------------------------------------------------------

Result<std::vector<SettlementLine>> Settlement::lines_of(std::int64_t batch_id,
                                                         const std::string& only) const {
  auto q = store_.query(std::string(kLineColumns) +
                        "WHERE batch_id = ?1 AND (?2 = '' OR (party_kind = 0 AND party_id = ?2)) "
                        "ORDER BY id");
  q.bind(1, batch_id).bind(2, only);
  std::vector<SettlementLine> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    out.push_back(line_from_row(q));
  }
}

Result<SettlementBatch> Settlement::read_batch(std::int64_t batch_id,
                                               const std::string& only) const {
  auto q = store_.query(
      "SELECT business_date, state, created_by, approved_by, more_due FROM settlement_batches "
      "WHERE id = ?1");
  q.bind(1, batch_id);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status(Errc::kNotFound, "no settlement batch " + std::to_string(batch_id));
  SettlementBatch b;
  b.id = batch_id;
  b.business_date = static_cast<int>(q.column_int64(0));
  b.state = static_cast<BatchState>(q.column_int64(1));
  b.created_by = q.column_text(2);
  b.approved_by = q.column_text(3);
  b.more_due = q.column_int64(4) != 0;
  auto lines = lines_of(batch_id, only);
  if (!lines.is_ok()) return lines.status();
  b.lines = std::move(lines).value();
  for (const SettlementLine& l : b.lines) {
    if (l.party_kind == PartyKind::kMerchant) {
      b.gross_fen += l.gross_fen;
      b.fee_fen += l.fee_fen;
    }
    b.net_fen += l.net_fen;
  }
  return b;
}

Result<SettlementBatch> Settlement::batch(const Session& by, std::int64_t batch_id) const {
  if (Status s = users_.require(
          by, {Role::kAdmin, Role::kFinance, Role::kMerchantOwner, Role::kMerchantOperator},
          "view settlement");
      !s.is_ok()) {
    return s;
  }
  const bool merchant_user = by.role == Role::kMerchantOwner || by.role == Role::kMerchantOperator;
  return read_batch(batch_id, merchant_user ? by.merchant_id : "");
}

Result<std::vector<SettlementLine>> Settlement::statements(const Session& by,
                                                           const std::string& merchant_id,
                                                           const DateRange& range) const {
  if (Status s = users_.require_merchant(by, merchant_id,
                                         {Role::kAdmin, Role::kFinance, Role::kMerchantOwner},
                                         "settlement statements");
      !s.is_ok()) {
    return s;
  }
  auto q = store_.query(std::string(kLineColumns) +
                        "WHERE party_kind = 0 AND party_id = ?1 AND period_to BETWEEN ?2 AND ?3 "
                        "AND batch_id IN " +
                        kApprovedBatches + " ORDER BY period_from LIMIT 1000");
  q.bind(1, merchant_id)
      .bind(2, std::int64_t{range.from_yyyymmdd.value_or(0)})
      .bind(3, std::int64_t{range.to_yyyymmdd.value_or(99'991'231)});
  std::vector<SettlementLine> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    out.push_back(line_from_row(q));
  }
}

// ---- review and approval -------------------------------------------------------------------

Status Settlement::post_line(const SettlementLine& l) {
  Posting p{
      "settlement", "batch " + std::to_string(l.batch_id) + " line " + std::to_string(l.id), {}};
  auto add = [&](std::string account, std::int64_t fen) {
    if (fen != 0) p.entries.push_back({std::move(account), fen});
  };
  if (l.party_kind == PartyKind::kMerchant) {
    // Refunds were debited to the payable when they were made (pos_refund.h).
    add(account::payable(l.party_id), l.gross_fen - l.refund_fen);
    add(account::qr_payable(l.party_id), l.qr_fen);
    add(std::string(account::kCommissionExpense), l.commission_fen);
    add(std::string(account::kPointsRedeemedDue), l.points_redeemed_fen);
    add(std::string(account::kFeeIncome), -(l.fee_fen - l.deployer_share_fen));
    if (!l.deployer_id.empty()) {
      add(account::deployer_payable(l.deployer_id), -l.deployer_share_fen);
    }
    add(std::string(account::kPointsReceivable), -l.points_cost_fen);
  } else {
    add(account::deployer_payable(l.party_id), l.gross_fen);
  }
  add(std::string(account::kBankClearing), -l.net_fen);
  if (p.entries.empty()) return Status::ok();
  return ledger_.post(p).status();
}

Status Settlement::approve(const Session& by, std::int64_t batch_id) {
  return users_.audited(by, "approve_settlement", std::to_string(batch_id), [&]() -> Status {
    if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "approve_settlement");
        !s.is_ok()) {
      return s;
    }
    auto b = read_batch(batch_id, "");
    if (!b.is_ok()) return b.status();
    if (b->state != BatchState::kDraft) {
      return Status(Errc::kRejected, "settlement batch " + std::to_string(batch_id) + " is " +
                                         batch_state_name(b->state) + "; only a draft is approved");
    }
    if (b->created_by == by.user) {
      return Status(Errc::kPermissionDenied, "settlement batch " + std::to_string(batch_id) +
                                                 " was prepared by " + by.user +
                                                 "; another user must approve it (four eyes)");
    }
    // The reviewed figures must still be the books' figures.
    int from = b->business_date, to = 0;
    for (const SettlementLine& l : b->lines) {
      if (l.party_kind != PartyKind::kMerchant) continue;
      from = std::min(from, l.period_from);
      to = std::max(to, l.period_to);
    }
    auto swipes = day_totals(store_, kSwipeDays, from, to);
    if (!swipes.is_ok()) return swipes.status();
    auto recharges = day_totals(store_, kRechargeDays, from, to);
    if (!recharges.is_ok()) return recharges.status();
    auto qr_days = day_totals(store_, kQrDays, from, to);
    if (!qr_days.is_ok()) return qr_days.status();
    std::map<std::string, int> last_day;
    for (const SettlementLine& l : b->lines) {
      if (l.party_kind != PartyKind::kMerchant) continue;
      const auto now_swipes = sum_period(*swipes, l.party_id, l.period_from, l.period_to);
      const auto now_recharges = sum_period(*recharges, l.party_id, l.period_from, l.period_to);
      const auto now_qr = sum_period(*qr_days, l.party_id, l.period_from, l.period_to);
      if (now_swipes != std::make_pair(l.txn_count, l.gross_fen) ||
          now_qr != std::make_pair(l.qr_count, l.qr_fen) ||
          now_recharges != std::make_pair(l.recharge_count, l.recharge_fen)) {
        return Status(Errc::kRejected, "figures of " + l.party_id + " for " +
                                           std::to_string(l.period_from) + ".." +
                                           std::to_string(l.period_to) +
                                           " changed since review; cancel and prepare again");
      }
      last_day[l.party_id] = std::max(last_day[l.party_id], l.period_to);
    }
    for (const SettlementLine& l : b->lines) {
      if (Status s = post_line(l); !s.is_ok()) return s;
      if (Status s = store_.query("UPDATE settlement_lines SET payout = ?2 WHERE id = ?1")
                         .bind(1, l.id)
                         .bind(2, static_cast<std::int64_t>(l.net_fen > 0 ? PayoutState::kPending
                                                                          : PayoutState::kNone))
                         .run();
          !s.is_ok()) {
        return s;
      }
      if (l.party_kind == PartyKind::kMerchant) {
        // The clearing records' reconciled flag.
        if (Status s = store_
                           .query("UPDATE swipes SET reconciled = 1 WHERE operator_id = ?1 AND "
                                  "settlement_date BETWEEN ?2 AND ?3")
                           .bind(1, l.party_id)
                           .bind(2, std::int64_t{l.period_from})
                           .bind(3, std::int64_t{l.period_to})
                           .run();
            !s.is_ok()) {
          return s;
        }
      }
    }
    for (const auto& [merchant_id, day] : last_day) {
      if (Status s =
              store_.query("UPDATE merchants SET settled_through = ?2 WHERE merchant_id = ?1")
                  .bind(1, merchant_id)
                  .bind(2, std::int64_t{day})
                  .run();
          !s.is_ok()) {
        return s;
      }
    }
    return store_
        .query(
            "UPDATE settlement_batches SET state = 1, approved_by = ?2, approved_at_us = ?3 "
            "WHERE id = ?1")
        .bind(1, batch_id)
        .bind(2, by.user)
        .bind(3, calendar_.now_us())
        .run();
  });
}

Status Settlement::cancel(const Session& by, std::int64_t batch_id) {
  return users_.audited(by, "cancel_settlement", std::to_string(batch_id), [&]() -> Status {
    if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "cancel_settlement");
        !s.is_ok()) {
      return s;
    }
    auto b = read_batch(batch_id, "");
    if (!b.is_ok()) return b.status();
    if (b->state != BatchState::kDraft) {
      return Status(Errc::kRejected, "settlement batch " + std::to_string(batch_id) + " is " +
                                         batch_state_name(b->state) +
                                         "; only a draft is cancelled");
    }
    for (const char* sql : {"UPDATE points_moves SET line_id = NULL WHERE line_id IN "
                            "(SELECT id FROM settlement_lines WHERE batch_id = ?1)",
                            "UPDATE pos_refunds SET line_id = NULL WHERE line_id IN "
                            "(SELECT id FROM settlement_lines WHERE batch_id = ?1)"}) {
      if (Status s = store_.query(sql).bind(1, batch_id).run(); !s.is_ok()) return s;
    }
    return store_.query("UPDATE settlement_batches SET state = 4 WHERE id = ?1")
        .bind(1, batch_id)
        .run();
  });
}

// ---- the bank file -------------------------------------------------------------------------

Result<BankFile> Settlement::write_bank_file(const Session& by, std::int64_t batch_id) {
  return users_.audited(by, "write_bank_file", std::to_string(batch_id), [&]() -> Result<BankFile> {
    if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "write_bank_file");
        !s.is_ok()) {
      return s;
    }
    auto b = read_batch(batch_id, "");
    if (!b.is_ok()) return b.status();
    if (!approved(b->state)) {
      return Status(Errc::kRejected, "settlement batch " + std::to_string(batch_id) + " is " +
                                         batch_state_name(b->state) +
                                         "; no bank file before it is approved");
    }
    auto q = store_.query(
        "UPDATE settlement_batches SET file_attempts = file_attempts + 1, state = "
        "CASE WHEN state = 1 THEN 2 ELSE state END WHERE id = ?1 RETURNING file_attempts");
    q.bind(1, batch_id);
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    const std::int64_t n = q.column_int64(0);
    std::vector<SettlementLine> payable;
    for (const SettlementLine& l : b->lines) {
      if (l.payout == PayoutState::kPending || l.payout == PayoutState::kReturned) {
        payable.push_back(l);
      }
    }
    BankFile f;
    std::string details;
    int i = 0;
    for (SettlementLine& l : payable) {
      l.payout_ref =
          "CC" + std::to_string(batch_id) + "-" + std::to_string(l.id) + "-" + std::to_string(n);
      // A bounced payout goes again to the account the merchant has now.
      if (l.payout == PayoutState::kReturned && l.party_kind == PartyKind::kMerchant) {
        if (const MerchantParams* m = merchants_.find(l.party_id)) {
          l.bank_name = m->bank_name;
          l.bank_account = m->bank_account;
          l.account_name = m->account_name;
        }
      }
      if (Status s = store_
                         .query("UPDATE settlement_lines SET payout = 1, payout_ref = ?2, "
                                "file_date = ?3, bank_name = ?4, bank_account = ?5, "
                                "account_name = ?6 WHERE id = ?1")
                         .bind(1, l.id)
                         .bind(2, l.payout_ref)
                         .bind(3, std::int64_t{calendar_.today_yyyymmdd()})
                         .bind(4, l.bank_name)
                         .bind(5, l.bank_account)
                         .bind(6, l.account_name)
                         .run();
          !s.is_ok()) {
        return s;
      }
      ++i;
      f.total_fen += l.net_fen;
      details += "D," + std::to_string(i) + "," + l.payout_ref + "," +
                 (l.party_kind == PartyKind::kMerchant ? "merchant" : "deployer") + "," +
                 l.party_id + "," + l.account_name + "," + l.bank_name + "," + l.bank_account +
                 "," + std::to_string(l.net_fen) + "," + yuan(l.net_fen) + ",CNY,settlement " +
                 std::to_string(l.period_from) + "-" + std::to_string(l.period_to) + "\n";
    }
    f.lines = i;
    f.contents = "# citycard batch payment file v1\nH," + std::to_string(batch_id) + "," +
                 std::to_string(b->business_date) + "," + std::to_string(i) + "," +
                 std::to_string(f.total_fen) + "\n" + details + "T," + std::to_string(i) + "," +
                 std::to_string(f.total_fen) + "\n";
    if (!options_.file_dir.empty()) {
      f.path = (std::filesystem::path(options_.file_dir) /
                ("settlement-" + std::to_string(batch_id) + "-" + std::to_string(n) + ".csv"))
                   .string();
      std::ofstream out(f.path, std::ios::binary | std::ios::trunc);
      out << f.contents;
      out.flush();
      if (!out) return Status(Errc::kIo, "cannot write " + f.path);
    }
    return f;
  });
}

// ---- reconciliation ------------------------------------------------------------------------

Result<BankReconciliation> Settlement::reconcile_bank(const Session& by, int date) {
  return users_.audited(
      by, "reconcile_bank", std::to_string(date), [&]() -> Result<BankReconciliation> {
        if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "reconcile_bank");
            !s.is_ok()) {
          return s;
        }
        BankReconciliation r;
        r.date = date;
        const std::vector<StatementLine> statement = bank_.statement(date);
        std::set<std::string> seen_orders, seen_refs;
        std::set<std::string> returned_refs;
        for (const StatementLine& l : statement) {
          if (l.kind == StatementKind::kPayoutReturned) returned_refs.insert(l.reference);
        }
        auto diff = [&](DifferenceKind k, const StatementLine& l, std::int64_t books,
                        const std::string& detail) {
          r.differences.push_back({k, l.kind, l.reference, books, l.amount_fen, detail});
        };
        for (const StatementLine& l : statement) {
          if (l.kind == StatementKind::kPaymentIn || l.kind == StatementKind::kRefundOut) {
            seen_orders.insert(statement_kind_name(l.kind) + std::string("/") + l.reference);
            auto q = store_.query(
                "SELECT amount_fen, state, bank_late_refund, channel FROM recharge_orders "
                "WHERE order_id = ?1");
            q.bind(1, l.reference);
            auto row = q.step();
            if (!row.is_ok()) return row.status();
            if (!*row || (q.column_int64(3) != 2 && q.column_int64(3) != 4)) {
              diff(DifferenceKind::kMissingInBooks, l, 0, "no bank order " + l.reference);
              continue;
            }
            const auto state = static_cast<OrderState>(q.column_int64(1));
            const bool late = q.column_int64(2) != 0;
            const std::int64_t amount = q.column_int64(0);
            const bool booked =
                l.kind == StatementKind::kPaymentIn
                    ? (state != OrderState::kCreated && state != OrderState::kFailed) || late
                    : state == OrderState::kReversed || late;
            if (!booked) {
              diff(DifferenceKind::kMissingInBooks, l, 0,
                   std::string("order ") + l.reference + " is " + order_state_name(state));
            } else if (amount != l.amount_fen) {
              diff(DifferenceKind::kAmountDiffers, l, amount, "order " + l.reference);
            } else {
              ++r.matched;
            }
            continue;
          }
          if (l.kind == StatementKind::kPayoutReturned) continue;  // with its payout below
          seen_refs.insert(l.reference);
          // Payout refs are CC<batch>-<line>-<attempt>: an earlier attempt still finds its line.
          auto q = store_.query(
              "SELECT id, net_fen, payout, payout_ref FROM settlement_lines WHERE id = ?1");
          q.bind(1, payout_line_of(l.reference));
          auto row = q.step();
          if (!row.is_ok()) return row.status();
          if (!*row) {
            diff(DifferenceKind::kMissingInBooks, l, 0, "no payout " + l.reference);
            continue;
          }
          const std::int64_t line_id = q.column_int64(0), net = q.column_int64(1);
          const auto payout = static_cast<PayoutState>(q.column_int64(2));
          if (net != l.amount_fen) {
            diff(DifferenceKind::kAmountDiffers, l, net, "payout " + l.reference);
            continue;
          }
          if (q.column_text(3) != l.reference) {
            // An attempt that was filed again later: it can only have bounced.
            if (returned_refs.count(l.reference) != 0) {
              diff(DifferenceKind::kPayoutReturned, l, net,
                   "earlier attempt " + l.reference + " bounced; filed again as " +
                       q.column_text(3));
            } else {
              diff(DifferenceKind::kMissingInBooks, l, net,
                   "earlier attempt " + l.reference + " was paid, and filed again as " +
                       q.column_text(3) + ": paid twice?");
            }
            continue;
          }
          if (returned_refs.count(l.reference) != 0) {
            diff(DifferenceKind::kPayoutReturned, l, net,
                 "payout " + l.reference + " bounced; it goes into the next file");
            if (payout == PayoutState::kPending) {
              if (Status s = store_.query("UPDATE settlement_lines SET payout = 3 WHERE id = ?1")
                                 .bind(1, line_id)
                                 .run();
                  !s.is_ok()) {
                return s;
              }
            }
            continue;
          }
          ++r.matched;
          if (payout != PayoutState::kPending) continue;  // confirmed by an earlier run
          if (Status s = store_.query("UPDATE settlement_lines SET payout = 2 WHERE id = ?1")
                             .bind(1, line_id)
                             .run();
              !s.is_ok()) {
            return s;
          }
          if (auto p = ledger_.post({"payout_confirmed",
                                     l.reference,
                                     {{std::string(account::kBankClearing), net},
                                      {std::string(account::kIssuerCash), -net}}});
              !p.is_ok()) {
            return p.status();
          }
          r.payouts_confirmed_fen += net;
        }
        // What the books say happened at the bank that day, and the statement does not show.
        {
          auto q = store_.query(
              "SELECT order_id, amount_fen, state, paid_date, done_date FROM recharge_orders "
              "WHERE channel IN (2, 4) AND ((paid_date = ?1 AND state IN (1, 2, 3, 4)) OR "
              "(done_date = ?1 AND state = 4))");
          q.bind(1, std::int64_t{date});
          for (;;) {
            auto row = q.step();
            if (!row.is_ok()) return row.status();
            if (!*row) break;
            const std::string id = q.column_text(0);
            const std::int64_t amount = q.column_int64(1);
            const auto state = static_cast<OrderState>(q.column_int64(2));
            const bool paid_today = !q.column_is_null(3) && q.column_int64(3) == date;
            const bool reversed_today =
                state == OrderState::kReversed && !q.column_is_null(4) && q.column_int64(4) == date;
            if (paid_today && seen_orders.count("payment_in/" + id) == 0) {
              r.differences.push_back({DifferenceKind::kMissingInBank, StatementKind::kPaymentIn,
                                       id, amount, 0, "payment of order " + id});
            }
            if (reversed_today && seen_orders.count("refund_out/" + id) == 0) {
              r.differences.push_back({DifferenceKind::kMissingInBank, StatementKind::kRefundOut,
                                       id, amount, 0, "refund of order " + id});
            }
          }
        }
        {
          auto q = store_.query(
              "SELECT payout_ref, net_fen FROM settlement_lines WHERE file_date = ?1 AND "
              "payout = 1");
          q.bind(1, std::int64_t{date});
          for (;;) {
            auto row = q.step();
            if (!row.is_ok()) return row.status();
            if (!*row) break;
            if (seen_refs.count(q.column_text(0)) == 0) {
              r.differences.push_back({DifferenceKind::kMissingInBank, StatementKind::kPayoutOut,
                                       q.column_text(0), q.column_int64(1), 0,
                                       "payout sent in a file, not on the statement"});
            }
          }
        }
        // Batches whose every payout is confirmed are closed.
        if (Status s = store_.exec(
                "UPDATE settlement_batches SET state = 3 WHERE state = 2 AND NOT EXISTS "
                "(SELECT 1 FROM settlement_lines l WHERE l.batch_id = settlement_batches.id AND "
                "l.payout IN (1, 3))");
            !s.is_ok()) {
          return s;
        }
        return r;
      });
}

Result<TerminalReconciliation> Settlement::reconcile_terminals(const Session& by, int date) const {
  if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "reconcile_terminals");
      !s.is_ok()) {
    return s;
  }
  TerminalReconciliation r;
  r.date = date;
  auto q = store_.query(
      "SELECT b.terminal_id, b.batch_no, b.record_count, b.total_amount_fen, b.duplicates, "
      "b.rejected, (SELECT count(*) FROM swipes s WHERE s.terminal_id = b.terminal_id AND "
      "s.batch_no = b.batch_no), (SELECT coalesce(sum(amount_fen), 0) FROM swipes s WHERE "
      "s.terminal_id = b.terminal_id AND s.batch_no = b.batch_no) FROM batches b "
      "WHERE b.settlement_date = ?1 ORDER BY b.terminal_id, b.batch_no");
  q.bind(1, std::int64_t{date});
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) break;
    ++r.batches;
    TerminalDifference d;
    (void)sql::copy_blob(q.column_blob(0), d.terminal);
    d.batch_no = static_cast<std::uint64_t>(q.column_int64(1));
    d.declared_count = q.column_int64(2);
    d.declared_fen = q.column_int64(3);
    d.duplicates = q.column_int64(4);
    d.rejected = q.column_int64(5);
    d.accepted_count = q.column_int64(6);
    d.accepted_fen = q.column_int64(7);
    r.declared_fen += d.declared_fen;
    r.accepted_fen += d.accepted_fen;
    if (d.declared_count == d.accepted_count && d.declared_fen == d.accepted_fen) continue;
    auto why = store_.query(
        "SELECT code_name, count(*) FROM rejected_records WHERE terminal_id = ?1 AND "
        "batch_no = ?2 GROUP BY code_name ORDER BY code_name");
    why.bind_blob(1, d.terminal).bind(2, q.column_int64(1));
    for (;;) {
      auto w = why.step();
      if (!w.is_ok()) return w.status();
      if (!*w) break;
      if (!d.detail.empty()) d.detail += ", ";
      d.detail += why.column_text(0) + " x" + std::to_string(why.column_int64(1));
    }
    if (d.duplicates > 0) {
      if (!d.detail.empty()) d.detail += ", ";
      d.detail += "DUPLICATE x" + std::to_string(d.duplicates) + " (cleared in an earlier batch)";
    }
    r.differences.push_back(std::move(d));
  }
  return r;
}

// ---- conservation --------------------------------------------------------------------------

Result<std::map<std::string, std::int64_t>> Settlement::settled_gross_by_merchant() const {
  auto q = store_.query(std::string("SELECT party_id, sum(gross_fen) FROM settlement_lines "
                                    "WHERE party_kind = 0 AND batch_id IN ") +
                        kApprovedBatches + " GROUP BY party_id");
  std::map<std::string, std::int64_t> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    out[q.column_text(0)] = q.column_int64(1);
  }
}

Result<std::int64_t> Settlement::bank_clearing_sum_fen() const {
  return sql::scalar(store_, std::string("SELECT coalesce(sum(net_fen), 0) FROM settlement_lines "
                                         "WHERE payout IN (1, 3) AND batch_id IN ") +
                                 kApprovedBatches);
}

Result<std::map<std::string, std::int64_t>> Settlement::deployer_owed() const {
  auto q = store_.query(
      std::string("SELECT who, sum(fen) FROM (SELECT deployer_id AS who, deployer_share_fen AS "
                  "fen FROM settlement_lines WHERE party_kind = 0 AND deployer_id <> '' AND "
                  "batch_id IN ") +
      kApprovedBatches +
      " UNION ALL SELECT party_id, -gross_fen FROM settlement_lines WHERE party_kind = 1 AND "
      "batch_id IN " +
      kApprovedBatches + ") GROUP BY who");
  std::map<std::string, std::int64_t> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    out[q.column_text(0)] = q.column_int64(1);
  }
}

Result<std::int64_t> Settlement::points_cost_charged_fen() const {
  return sql::scalar(store_, std::string("SELECT coalesce(sum(points_cost_fen), 0) FROM "
                                         "settlement_lines WHERE batch_id IN ") +
                                 kApprovedBatches);
}

Result<std::int64_t> Settlement::points_redeemed_paid_fen() const {
  return sql::scalar(store_, std::string("SELECT coalesce(sum(points_redeemed_fen), 0) FROM "
                                         "settlement_lines WHERE batch_id IN ") +
                                 kApprovedBatches);
}

Result<std::int64_t> Settlement::fee_income_fen() const {
  return sql::scalar(store_, std::string("SELECT coalesce(sum(fee_fen - deployer_share_fen), 0) "
                                         "FROM settlement_lines WHERE batch_id IN ") +
                                 kApprovedBatches);
}

Result<std::int64_t> Settlement::commission_fen() const {
  return sql::scalar(store_, std::string("SELECT coalesce(sum(commission_fen), 0) FROM "
                                         "settlement_lines WHERE batch_id IN ") +
                                 kApprovedBatches);
}

}  // namespace citycard::backend
