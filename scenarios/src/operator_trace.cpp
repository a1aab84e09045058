#include "operator_trace.h"

#include <string>

#include "citycard/protocol/bytes.h"

namespace citycard::scenarios {

namespace {

using Json = reports::Json;

const char* kReportUser = "citycard-reports";
const char* kReportPassword = "citycard-reports-run-end";

Result<backend::Session> staff_session(backend::Backend& be) {
  Status boot = be.users().bootstrap_admin(kReportUser, kReportPassword);
  if (!boot && boot.code() != Errc::kRejected) return Result<backend::Session>(boot);
  // kRejected: users exist; only our own admin (from an earlier end of run) can log in.
  return be.users().login(kReportUser, kReportPassword);
}

const char* period_kind(backend::ReportPeriod p) {
  return p == backend::ReportPeriod::kDay ? "day" : "month";
}

}  // namespace

void trace_operator_reports(backend::Backend& be, reports::TraceWriter& trace, std::int64_t t_us,
                            const backend::Session* given) {
  auto session = given ? Result<backend::Session>(*given) : staff_session(be);
  if (!session) {
    trace.event(t_us, "operator_reports_skipped", {{"reason", session.status().to_string()}});
    return;
  }
  const backend::Session& by = *session;
  const backend::DateRange all{};
  auto& rd = be.reports();

  if (auto iss = rd.issuance(by, all, backend::ReportPeriod::kDay); iss) {
    Json issued = Json::array();
    for (const auto& [day, n] : iss->issued) issued.push_back({day, n});
    trace.event(t_us, "op_issuance",
                {{"cards", iss->cards},
                 {"named", iss->named},
                 {"anonymous", iss->anonymous},
                 {"by_type",
                  {{"adult", iss->by_type[0]},
                   {"student", iss->by_type[1]},
                   {"elder", iss->by_type[2]},
                   {"staff", iss->by_type[3]}}},
                 {"by_status", iss->by_status},
                 {"balance_fen", iss->balance_fen},
                 {"deposit_fen", iss->deposit_fen},
                 {"issued", issued}});
  }
  if (auto tc = rd.transactions(by, all); tc) {
    Json recharges = Json::object();
    for (const auto& [channel, cf] : tc->recharges) {
      recharges[channel] = {{"count", cf.first}, {"amount_fen", cf.second}};
    }
    trace.event(t_us, "op_transactions",
                {{"purchases", tc->purchases},
                 {"purchase_fen", tc->purchase_fen},
                 {"suspicious", tc->suspicious},
                 {"rejected_records", tc->rejected_records},
                 {"duplicate_records", tc->duplicate_records},
                 {"recharges", recharges},
                 {"orders_by_state", tc->orders_by_state},
                 {"reversals", tc->reversals},
                 {"cards_by_status", tc->cards_by_status}});
  }
  if (auto fr = rd.failures(by, all); fr) {
    trace.event(t_us, "op_failures",
                {{"records", fr->records},
                 {"records_refused", fr->records_refused},
                 {"refused_ppm", fr->refused_ppm},
                 {"refused_by_code", fr->refused_by_code},
                 {"load_attempts", fr->load_attempts},
                 {"load_failures", fr->load_failures},
                 {"load_failure_ppm", fr->load_failure_ppm},
                 {"orders", fr->orders},
                 {"orders_failed", fr->orders_failed},
                 {"order_failure_ppm", fr->order_failure_ppm}});
  }
  for (auto period : {backend::ReportPeriod::kDay, backend::ReportPeriod::kMonth}) {
    if (auto ms = rd.merchants(by, "", all, period); ms) {
      for (const auto& m : *ms) {
        trace.event(t_us, "op_merchant",
                    {{"merchant", m.merchant_id},
                     {"period_kind", period_kind(period)},
                     {"period", m.period},
                     {"purchases", m.purchases},
                     {"purchase_fen", m.purchase_fen},
                     {"recharges", m.recharges},
                     {"recharge_fen", m.recharge_fen}});
      }
    }
    if (auto ts = rd.terminals(by, "", all, period); ts) {
      for (const auto& t : *ts) {
        trace.event(t_us, "op_terminal",
                    {{"terminal", to_hex(t.terminal)},
                     {"merchant", t.merchant_id},
                     {"period_kind", period_kind(period)},
                     {"period", t.period},
                     {"purchases", t.purchases},
                     {"purchase_fen", t.purchase_fen},
                     {"batches", t.batches},
                     {"rejected", t.rejected}});
      }
    }
  }
  const std::pair<backend::ClearingDimension, const char*> dims[] = {
      {backend::ClearingDimension::kRoute, "route"},
      {backend::ClearingDimension::kVehicle, "vehicle"},
      {backend::ClearingDimension::kDriver, "driver"}};
  for (const auto& [dim, name] : dims) {
    if (auto totals = rd.transit(by, dim, "", all); totals) {
      for (const auto& d : *totals) {
        trace.event(t_us, "op_transit",
                    {{"dimension", name},
                     {"operator", d.operator_id},
                     {"key", d.key},
                     {"count", d.count},
                     {"amount_fen", d.amount_fen},
                     {"full_fare_fen", d.full_fare_fen},
                     {"transfers", d.transfers}});
      }
    }
  }
  // Settlement batches by id, from 1 until the first that does not exist.
  for (std::int64_t id = 1;; ++id) {
    auto b = be.settlement().batch(by, id);
    if (!b) break;
    Json lines = Json::array();
    for (const auto& l : b->lines) {
      lines.push_back(
          {{"id", l.id},
           {"party_kind", l.party_kind == backend::PartyKind::kMerchant ? "merchant" : "deployer"},
           {"party", l.party_id},
           {"period_from", l.period_from},
           {"period_to", l.period_to},
           {"txn_count", l.txn_count},
           {"gross_fen", l.gross_fen},
           {"fee_fen", l.fee_fen},
           {"deployer", l.deployer_id},
           {"deployer_share_fen", l.deployer_share_fen},
           {"recharge_count", l.recharge_count},
           {"recharge_fen", l.recharge_fen},
           {"commission_fen", l.commission_fen},
           {"points_redeemed_fen", l.points_redeemed_fen},
           {"points_cost_fen", l.points_cost_fen},
           {"net_fen", l.net_fen},
           {"bank_name", l.bank_name},
           {"bank_account", l.bank_account},
           {"account_name", l.account_name},
           {"payout", static_cast<int>(l.payout)},
           {"payout_ref", l.payout_ref}});
    }
    trace.event(t_us, "settlement_batch",
                {{"batch", b->id},
                 {"business_date", b->business_date},
                 {"state", backend::batch_state_name(b->state)},
                 {"created_by", b->created_by},
                 {"approved_by", b->approved_by},
                 {"gross_fen", b->gross_fen},
                 {"fee_fen", b->fee_fen},
                 {"net_fen", b->net_fen},
                 {"lines", lines}});
  }
}

}  // namespace citycard::scenarios
