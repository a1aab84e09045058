#include "citycard/backend/report_data.h"

#include "citycard/backend/issuance.h"
#include "citycard/protocol/personalisation.h"
#include "sql_util.h"

namespace citycard::backend {

namespace {

constexpr std::int64_t kUnixMinusEpoch2000S = 946'684'800;

std::int64_t ppm(std::int64_t part, std::int64_t whole) {
  if (whole == 0) return 0;
  // (part / whole) * 10^6 without forming part * 10^6 for large parts.
  return part / whole * 1'000'000 + part % whole * 1'000'000 / whole;
}

std::int64_t lo(const DateRange& r) {
  return r.from_yyyymmdd.value_or(0);
}
std::int64_t hi(const DateRange& r) {
  return r.to_yyyymmdd.value_or(99'991'231);
}
// A day column grouped by day or by month.
std::int64_t divisor(ReportPeriod p) {
  return p == ReportPeriod::kMonth ? 100 : 1;
}

}  // namespace

Status ReportData::scope(const Session& by, const std::string& merchant_id,
                         const char* what) const {
  if (merchant_id.empty()) return users_.require(by, {Role::kAdmin, Role::kFinance}, what);
  return users_.require_merchant(
      by, merchant_id,
      {Role::kAdmin, Role::kFinance, Role::kMerchantOwner, Role::kMerchantOperator}, what);
}

Result<IssuanceStats> ReportData::issuance(const Session& by, const DateRange& range,
                                           ReportPeriod period) const {
  if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "issuance report");
      !s.is_ok()) {
    return s;
  }
  IssuanceStats out;
  {
    auto q = store_.query(
        "SELECT c.card_type, c.status, x.holder_id IS NOT NULL, count(*), sum(c.balance_fen), "
        "sum(c.deposit_fen) FROM cards c LEFT JOIN card_ext x ON x.serial = c.serial "
        "GROUP BY 1, 2, 3");
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      const std::int64_t n = q.column_int64(3);
      const auto type = static_cast<std::size_t>(q.column_int64(0));
      out.cards += n;
      if (type < out.by_type.size()) out.by_type[type] += n;
      out.by_status[card_status_name(static_cast<CardStatus>(q.column_int64(1)))] += n;
      (q.column_int64(2) != 0 ? out.named : out.anonymous) += n;
      out.balance_fen += q.column_int64(4);
      out.deposit_fen += q.column_int64(5);
    }
  }
  // The calendar second of the clock's zero, so issued_at_us maps onto days in SQL.
  const std::int64_t origin_unix_s =
      calendar_.now_epoch2000_s() - calendar_.now_us() / 1'000'000 + kUnixMinusEpoch2000S;
  auto q = store_.query(
      "SELECT d / ?4, count(*) FROM (SELECT CAST(strftime('%Y%m%d', ?1 + issued_at_us / 1000000, "
      "'unixepoch') AS INTEGER) AS d FROM cards) WHERE d BETWEEN ?2 AND ?3 GROUP BY 1 ORDER BY 1 "
      "LIMIT 1000");
  q.bind(1, origin_unix_s).bind(2, lo(range)).bind(3, hi(range)).bind(4, divisor(period));
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) break;
    out.issued.emplace_back(static_cast<int>(q.column_int64(0)), q.column_int64(1));
  }
  return out;
}

Result<std::vector<MerchantSummary>> ReportData::merchants(const Session& by,
                                                           const std::string& merchant_id,
                                                           const DateRange& range,
                                                           ReportPeriod period) const {
  if (Status s = scope(by, merchant_id, "merchant report"); !s.is_ok()) return s;
  std::map<std::pair<std::string, int>, MerchantSummary> rows;
  {
    auto q = store_.query(
        "SELECT operator_id, settlement_date / ?4, count(*), sum(amount_fen) FROM swipes "
        "WHERE settlement_date BETWEEN ?1 AND ?2 AND (?3 = '' OR operator_id = ?3) "
        "GROUP BY 1, 2");
    q.bind(1, lo(range)).bind(2, hi(range)).bind(3, merchant_id).bind(4, divisor(period));
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      MerchantSummary& m = rows[{q.column_text(0), static_cast<int>(q.column_int64(1))}];
      m.merchant_id = q.column_text(0);
      m.period = static_cast<int>(q.column_int64(1));
      m.purchases = q.column_int64(2);
      m.purchase_fen = q.column_int64(3);
    }
  }
  {
    auto q = store_.query(
        "SELECT merchant_id, done_date / ?4, count(*), sum(amount_fen) FROM recharge_orders "
        "WHERE channel = 1 AND state = 3 AND done_date BETWEEN ?1 AND ?2 AND "
        "(?3 = '' OR merchant_id = ?3) GROUP BY 1, 2");
    q.bind(1, lo(range)).bind(2, hi(range)).bind(3, merchant_id).bind(4, divisor(period));
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      MerchantSummary& m = rows[{q.column_text(0), static_cast<int>(q.column_int64(1))}];
      m.merchant_id = q.column_text(0);
      m.period = static_cast<int>(q.column_int64(1));
      m.recharges = q.column_int64(2);
      m.recharge_fen = q.column_int64(3);
    }
  }
  std::vector<MerchantSummary> out;
  for (auto& [key, m] : rows) out.push_back(std::move(m));
  return out;
}

Result<std::vector<TerminalSummary>> ReportData::terminals(const Session& by,
                                                           const std::string& merchant_id,
                                                           const DateRange& range,
                                                           ReportPeriod period) const {
  if (Status s = scope(by, merchant_id, "terminal report"); !s.is_ok()) return s;
  auto q = store_.query(
      "SELECT b.terminal_id, t.operator_id, b.settlement_date / ?4, count(*), sum(b.accepted), "
      "sum(b.rejected), (SELECT coalesce(sum(s.amount_fen), 0) FROM swipes s WHERE "
      "s.terminal_id = b.terminal_id AND s.settlement_date / ?4 = b.settlement_date / ?4 AND "
      "s.settlement_date BETWEEN ?1 AND ?2) FROM batches b JOIN terminals t ON "
      "t.terminal_id = b.terminal_id WHERE b.settlement_date BETWEEN ?1 AND ?2 AND "
      "(?3 = '' OR t.operator_id = ?3) GROUP BY 1, 2, 3 ORDER BY 1, 3 LIMIT 100000");
  q.bind(1, lo(range)).bind(2, hi(range)).bind(3, merchant_id).bind(4, divisor(period));
  std::vector<TerminalSummary> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    TerminalSummary t;
    (void)sql::copy_blob(q.column_blob(0), t.terminal);
    t.merchant_id = q.column_text(1);
    t.period = static_cast<int>(q.column_int64(2));
    t.batches = q.column_int64(3);
    t.purchases = q.column_int64(4);
    t.rejected = q.column_int64(5);
    t.purchase_fen = q.column_int64(6);
    out.push_back(std::move(t));
  }
}

Result<TransactionCounts> ReportData::transactions(const Session& by,
                                                   const DateRange& range) const {
  if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "transaction report");
      !s.is_ok()) {
    return s;
  }
  TransactionCounts out;
  {
    auto q = store_.query(
        "SELECT count(*), coalesce(sum(amount_fen), 0), coalesce(sum(suspicious <> 0), 0) "
        "FROM swipes WHERE settlement_date BETWEEN ?1 AND ?2");
    q.bind(1, lo(range)).bind(2, hi(range));
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    out.purchases = q.column_int64(0);
    out.purchase_fen = q.column_int64(1);
    out.suspicious = q.column_int64(2);
  }
  {
    auto q = store_.query(
        "SELECT coalesce(sum(rejected), 0), coalesce(sum(duplicates), 0) FROM batches "
        "WHERE settlement_date BETWEEN ?1 AND ?2");
    q.bind(1, lo(range)).bind(2, hi(range));
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    out.rejected_records = q.column_int64(0);
    out.duplicate_records = q.column_int64(1);
  }
  {
    auto q = store_.query(
        "SELECT channel, state, count(*), sum(amount_fen) FROM recharge_orders "
        "WHERE created_date BETWEEN ?1 AND ?2 GROUP BY 1, 2");
    q.bind(1, lo(range)).bind(2, hi(range));
    static const char* kChannels[] = {"counter", "merchant_pos",   "bank",   "voucher",
                                      "phone",   "online_account", "rebate", "points"};
    static const char* kStates[] = {"created", "paid",     "authorized",
                                    "loaded",  "reversed", "failed"};
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      const auto c = static_cast<std::size_t>(q.column_int64(0));
      const auto st = static_cast<std::size_t>(q.column_int64(1));
      const std::string state = st < std::size(kStates) ? kStates[st] : "unknown";
      out.orders_by_state[state] += q.column_int64(2);
      if (st == 3 && c < std::size(kChannels)) {
        auto& r = out.recharges[kChannels[c]];
        r.first += q.column_int64(2);
        r.second += q.column_int64(3);
      }
      if (st == 4) out.reversals += q.column_int64(2);
    }
  }
  {
    auto q = store_.query("SELECT status, count(*) FROM cards GROUP BY 1");
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      out.cards_by_status[card_status_name(static_cast<CardStatus>(q.column_int64(0)))] =
          q.column_int64(1);
    }
  }
  return out;
}

Result<FailureRates> ReportData::failures(const Session& by, const DateRange& range) const {
  if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "failure report"); !s.is_ok()) {
    return s;
  }
  FailureRates out;
  {
    auto q = store_.query(
        "SELECT coalesce(sum(record_count), 0), coalesce(sum(rejected), 0) FROM batches "
        "WHERE settlement_date BETWEEN ?1 AND ?2");
    q.bind(1, lo(range)).bind(2, hi(range));
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    out.records = q.column_int64(0);
    out.records_refused = q.column_int64(1);
  }
  {
    auto q = store_.query(
        "SELECT r.code_name, count(*) FROM rejected_records r JOIN batches b ON "
        "b.terminal_id = r.terminal_id AND b.batch_no = r.batch_no WHERE b.settlement_date "
        "BETWEEN ?1 AND ?2 GROUP BY 1");
    q.bind(1, lo(range)).bind(2, hi(range));
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      out.refused_by_code[q.column_text(0)] = q.column_int64(1);
    }
  }
  {
    // Loads are audited one row per attempt; the audit log knows their outcomes.
    auto q = store_.query(
        "SELECT count(*), coalesce(sum(ok = 0), 0) FROM audit_log WHERE action IN "
        "('load_auth', 'load_confirm')");
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    out.load_attempts = q.column_int64(0);
    out.load_failures = q.column_int64(1);
  }
  {
    auto q = store_.query(
        "SELECT count(*), coalesce(sum(state = 5), 0) FROM recharge_orders "
        "WHERE created_date BETWEEN ?1 AND ?2");
    q.bind(1, lo(range)).bind(2, hi(range));
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    out.orders = q.column_int64(0);
    out.orders_failed = q.column_int64(1);
  }
  out.refused_ppm = ppm(out.records_refused, out.records);
  out.load_failure_ppm = ppm(out.load_failures, out.load_attempts);
  out.order_failure_ppm = ppm(out.orders_failed, out.orders);
  return out;
}

Result<std::vector<DimensionTotal>> ReportData::transit(const Session& by,
                                                        ClearingDimension dimension,
                                                        const std::string& operator_id,
                                                        const DateRange& range) const {
  if (Status s = scope(by, operator_id, "transit report"); !s.is_ok()) return s;
  return clearing_.by(dimension, range, operator_id);
}

}  // namespace citycard::backend
