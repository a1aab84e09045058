#include "citycard/backend/clearing.h"

#include <iterator>
#include <map>

namespace citycard::backend {
namespace {

// Open ends become the widest dates, so one cached statement serves every range.
void bind_range(Query& q, const DateRange& range) {
  q.bind(1, std::int64_t{range.from_yyyymmdd.value_or(0)});
  q.bind(2, std::int64_t{range.to_yyyymmdd.value_or(99'991'231)});
}

}  // namespace

Result<std::vector<OperatorTotal>> Clearing::by_operator(const DateRange& range) const {
  auto q = store_.query(
      "SELECT operator_id, count(*), sum(amount_fen) FROM swipes "
      "WHERE settlement_date BETWEEN ?1 AND ?2 GROUP BY operator_id ORDER BY operator_id");
  bind_range(q, range);
  std::vector<OperatorTotal> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    out.push_back({q.column_text(0), q.column_int64(1), q.column_int64(2)});
  }
}

Result<std::vector<RouteTotal>> Clearing::by_route(const DateRange& range) const {
  auto q = store_.query(
      "SELECT operator_id, route, count(*), sum(amount_fen) FROM swipes "
      "WHERE settlement_date BETWEEN ?1 AND ?2 GROUP BY operator_id, route "
      "ORDER BY operator_id, route");
  bind_range(q, range);
  std::vector<RouteTotal> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    out.push_back({q.column_text(0), q.column_text(1), q.column_int64(2), q.column_int64(3)});
  }
}

Result<std::vector<DimensionTotal>> Clearing::by(ClearingDimension dimension,
                                                 const DateRange& range,
                                                 const std::string& operator_id) const {
  // One literal per dimension: the column name cannot be a bound parameter.
  static constexpr const char* kSql[] = {
      "SELECT operator_id, route, count(*), sum(amount_fen), sum(fare_full_fen), "
      "sum(transfer_count > 0) FROM swipes WHERE settlement_date BETWEEN ?1 AND ?2 AND "
      "(?3 = '' OR operator_id = ?3) GROUP BY operator_id, route ORDER BY operator_id, route",
      "SELECT operator_id, vehicle, count(*), sum(amount_fen), sum(fare_full_fen), "
      "sum(transfer_count > 0) FROM swipes WHERE settlement_date BETWEEN ?1 AND ?2 AND "
      "(?3 = '' OR operator_id = ?3) GROUP BY operator_id, vehicle ORDER BY operator_id, vehicle",
      "SELECT operator_id, driver, count(*), sum(amount_fen), sum(fare_full_fen), "
      "sum(transfer_count > 0) FROM swipes WHERE settlement_date BETWEEN ?1 AND ?2 AND "
      "(?3 = '' OR operator_id = ?3) GROUP BY operator_id, driver ORDER BY operator_id, driver",
      "SELECT operator_id, device, count(*), sum(amount_fen), sum(fare_full_fen), "
      "sum(transfer_count > 0) FROM swipes WHERE settlement_date BETWEEN ?1 AND ?2 AND "
      "(?3 = '' OR operator_id = ?3) GROUP BY operator_id, device ORDER BY operator_id, device",
  };
  const auto i = static_cast<std::size_t>(dimension);
  if (i >= std::size(kSql)) return Status(Errc::kInvalidArgument, "unknown clearing dimension");
  auto q = store_.query(kSql[i]);
  bind_range(q, range);
  q.bind(3, operator_id);
  std::vector<DimensionTotal> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    out.push_back({q.column_text(0), q.column_text(1), q.column_int64(2), q.column_int64(3),
                   q.column_int64(4), q.column_int64(5)});
  }
}

Status Clearing::reconcile_with_ledger() const {
  auto totals = by_operator();
  if (!totals.is_ok()) return totals.status();
  auto payables = ledger_.balances(account::kPayablePrefix);
  if (!payables.is_ok()) return payables.status();

  std::map<std::string, std::int64_t> owed;  // operator -> what the ledger owes it
  for (const AccountBalance& a : *payables) {
    owed[a.account.substr(account::kPayablePrefix.size())] = -a.balance_fen;
  }
  std::map<std::string, std::int64_t> cleared;
  for (const OperatorTotal& t : *totals) cleared[t.operator_id] = t.amount_fen;
  {
    // POS refunds moved money out of the payable when they were made, and approved
    // settlements their gross less the refunds they deducted (settlement.h, pos_refund.h).
    auto q = store_.query(
        "SELECT party_id, sum(gross_fen - refund_fen) FROM settlement_lines WHERE party_kind = 0 "
        "AND batch_id IN (SELECT id FROM settlement_batches WHERE state IN (1, 2, 3)) "
        "GROUP BY party_id UNION ALL "
        "SELECT merchant_id, sum(amount_fen) FROM pos_refunds GROUP BY merchant_id");
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      cleared[q.column_text(0)] -= q.column_int64(1);
    }
  }
  for (const auto& [op, amount] : cleared) {
    if (owed.count(op) == 0 && amount != 0) {
      return Status(Errc::kInternal, "operator " + op + " cleared " + std::to_string(amount) +
                                         " fen but has no payable account");
    }
  }
  for (const auto& [op, amount] : owed) {
    const auto it = cleared.find(op);
    const std::int64_t c = it == cleared.end() ? 0 : it->second;
    if (c != amount) {
      return Status(Errc::kInternal, "operator " + op + ": swipes less settlements total " +
                                         std::to_string(c) + " fen, ledger owes " +
                                         std::to_string(amount) + " (difference " +
                                         std::to_string(c - amount) + ")");
    }
  }
  return Status::ok();
}

}  // namespace citycard::backend
