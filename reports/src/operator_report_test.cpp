#include "citycard/reports/operator_report.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "citycard/reports/report.h"
#include "citycard/reports/run_summary.h"

namespace citycard::reports {
namespace {

namespace fs = std::filesystem;

Json settlement_batch() {
  Json line1 = {{"id", 3},
                {"party_kind", "merchant"},
                {"party", "M001"},
                {"period_from", 20260301},
                {"period_to", 20260301},
                {"txn_count", 120},
                {"gross_fen", 60000},
                {"fee_fen", 360},
                {"deployer", "D1"},
                {"deployer_share_fen", 36},
                {"commission_fen", 100},
                {"net_fen", 59740},
                {"bank_name", "ICBC"},
                {"bank_account", "6222000011112222"},
                {"account_name", "Bakery Ltd"},
                {"payout", 1},
                {"payout_ref", "CC7-3-1"}};
  Json line2 = {{"id", 4},
                {"party_kind", "deployer"},
                {"party", "D1"},
                {"period_from", 20260301},
                {"period_to", 20260301},
                {"net_fen", 36},
                {"bank_name", "BOC"},
                {"bank_account", "6216"},
                {"account_name", "Deployer"},
                {"payout", 3},
                {"payout_ref", "CC7-4-1"}};
  Json paid = {{"id", 5},     {"party_kind", "merchant"}, {"party", "M002"}, {"net_fen", 999},
               {"payout", 2}, {"payout_ref", "CC7-5-1"}};
  return {{"ev", "settlement_batch"},
          {"t_us", 5},
          {"batch", 7},
          {"business_date", 20260302},
          {"state", "file_written"},
          {"created_by", "fin1"},
          {"approved_by", "fin2"},
          {"gross_fen", 61000},
          {"fee_fen", 360},
          {"net_fen", 60775},
          {"lines", Json::array({line1, line2, paid})}};
}

std::string write_run_with_operator_events(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "oprun_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto trace = TraceWriter::open(dir + "/trace.jsonl");
  EXPECT_TRUE(trace.is_ok());
  auto& t = **trace;
  t.event(1, "swipe", {{"ok", true}, {"route", "R1"}, {"vehicle", "R1-B1"}, {"amount_fen", 200}});
  t.event(9, "op_issuance",
          {{"cards", 1000},
           {"named", 400},
           {"anonymous", 600},
           {"by_type", {{"adult", 900}, {"student", 100}, {"elder", 0}, {"staff", 0}}},
           {"by_status", {{"active", 998}, {"blacklisted", 2}}},
           {"balance_fen", 2'000'000},
           {"deposit_fen", 2'000'000},
           {"issued", Json::array({Json::array({20260301, 1000})})}});
  t.event(9, "op_transactions",
          {{"purchases", 5000},
           {"purchase_fen", 1'000'000},
           {"suspicious", 1},
           {"rejected_records", 2},
           {"duplicate_records", 3},
           {"recharges", {{"pos", {{"count", 10}, {"amount_fen", 50000}}}}},
           {"orders_by_state", {{"paid", 10}}},
           {"reversals", 1},
           {"cards_by_status", Json::object()}});
  t.event(9, "op_failures",
          {{"records", 5002},
           {"records_refused", 2},
           {"refused_ppm", 399},
           {"refused_by_code", {{"BAD_TAC", 2}}},
           {"load_attempts", 20},
           {"load_failures", 1},
           {"load_failure_ppm", 50000},
           {"orders", 10},
           {"orders_failed", 0},
           {"order_failure_ppm", 0}});
  for (const char* kind : {"day", "month"}) {
    t.event(9, "op_merchant",
            {{"merchant", "M001"},
             {"period_kind", kind},
             {"period", std::string(kind) == "day" ? 20260301 : 202603},
             {"purchases", 120},
             {"purchase_fen", 60000},
             {"recharges", 4},
             {"recharge_fen", 20000}});
    t.event(9, "op_terminal",
            {{"terminal", "010203040506"},
             {"merchant", "M001"},
             {"period_kind", kind},
             {"period", std::string(kind) == "day" ? 20260301 : 202603},
             {"purchases", 120},
             {"purchase_fen", 60000},
             {"batches", 3},
             {"rejected", 0}});
  }
  for (const auto& [dim, key] :
       {std::pair{"route", "R1"}, std::pair{"vehicle", "R1-B1"}, std::pair{"driver", "DRV-0042"}}) {
    t.event(9, "op_transit",
            {{"dimension", dim},
             {"operator", "BUS1"},
             {"key", key},
             {"count", 4999},
             {"amount_fen", 999'800},
             {"full_fare_fen", 1'000'000},
             {"transfers", 12}});
  }
  Json b = settlement_batch();
  b.erase("ev");
  b.erase("t_us");
  t.event(10, "settlement_batch", b);
  RunSummary s;
  s.scenario = "operator";
  s.seed = 3;
  s.ledger_balanced = true;
  s.expectations.push_back({"ok", true, "", "x.lua:1", 0});
  s.trace_digest = t.digest_hex();
  EXPECT_TRUE(t.close().is_ok());
  EXPECT_TRUE(write_text_file(dir + "/summary.json", to_json(s).dump()).is_ok());
  return dir;
}

TEST(OperatorReport, BankFileFollowsTheDocumentedLayoutWithOutstandingPayoutsOnly) {
  EXPECT_EQ(bank_batch_file(settlement_batch()),
            "# citycard batch payment file v1\n"
            "H,7,20260302,2,59776\n"
            "D,1,CC7-3-1,merchant,M001,Bakery Ltd,ICBC,6222000011112222,59740,597.40,CNY,"
            "settlement 20260301-20260301\n"
            "D,2,CC7-4-1,deployer,D1,Deployer,BOC,6216,36,0.36,CNY,settlement 20260301-20260301\n"
            "T,2,59776\n");
}

TEST(OperatorReport, RenderRunWritesTheOperatorCsvsAndSections) {
  const std::string dir = write_run_with_operator_events("full");
  ASSERT_TRUE(render_run(dir).is_ok());
  auto text = [&](const std::string& f) {
    auto r = read_text_file(dir + "/" + f);
    EXPECT_TRUE(r.is_ok()) << f;
    return r.is_ok() ? *r : std::string();
  };
  EXPECT_NE(text("issuance.csv").find("\ncards,1000\n"), std::string::npos);
  EXPECT_NE(text("issuance.csv").find("\nissued:20260301,1000\n"), std::string::npos);
  EXPECT_NE(text("transactions.csv").find("\nrecharge:pos,10,50000\n"), std::string::npos);
  EXPECT_NE(text("failure_rates.csv").find("\nrecords_refused,5002,2,399\n"), std::string::npos);
  EXPECT_NE(text("merchant_summary.csv").find("\nmonth,202603,M001,120,60000,4,20000\n"),
            std::string::npos);
  EXPECT_NE(text("terminal_summary.csv").find("\nday,20260301,010203040506,M001,120,60000,3,0\n"),
            std::string::npos);
  const std::string transit = text("transit.csv");
  for (const char* l :
       {"\nroute,BUS1,R1,4999,999800,1000000,12\n", "\nvehicle,BUS1,R1-B1,4999,999800,1000000,12\n",
        "\ndriver,BUS1,DRV-0042,4999,999800,1000000,12\n"}) {
    EXPECT_NE(transit.find(l), std::string::npos) << l;
  }
  const std::string settlement = text("settlement.csv");
  EXPECT_NE(settlement.find("\n7,20260302,file_written,3,merchant,M001,20260301,20260301,120,"
                            "60000,360,D1,36,100,0,0,59740,pending,CC7-3-1\n"),
            std::string::npos)
      << settlement;
  EXPECT_EQ(text("bank_batch_7.csv"), bank_batch_file(settlement_batch()));
  const std::string html = text("report.html");
  for (const char* s :
       {"id='operator'", "Issuance", "Transactions by type", "Failure rates", "0.0399%",
        "id='transit'", "Per vehicle", "DRV-0042", "Takings per route (backend clearing)",
        "id='merchants'", "id='terminals'", "id='settlement'", "CC7-4-1", "returned"}) {
    EXPECT_NE(html.find(s), std::string::npos) << s;
  }
  // The operator sections come before the expectations table, after the run's own figures.
  EXPECT_LT(html.find("id='operator'"), html.find("<h2>Expectations</h2>"));
}

TEST(OperatorReport, ADraftBatchHasNoBankFileAndARunWithoutEventsNoCsvs) {
  TraceStats st;
  Json draft = settlement_batch();
  draft["state"] = "draft";
  st.operator_events.push_back(draft);
  bool bank = false, settlement = false;
  for (const auto& [name, text] : operator_csv_files(st)) {
    bank = bank || name.starts_with("bank_batch_");
    settlement = settlement || name == "settlement.csv";
  }
  EXPECT_FALSE(bank);
  EXPECT_TRUE(settlement);
  EXPECT_TRUE(operator_csv_files(TraceStats{}).empty());
  EXPECT_EQ(operator_html_sections(TraceStats{}), "");
}

TEST(OperatorReport, SkippedReportsSayWhy) {
  TraceStats st;
  st.operator_events.push_back(
      {{"ev", "operator_reports_skipped"}, {"reason", "permission denied: <users exist>"}});
  const std::string html = operator_html_sections(st);
  EXPECT_NE(html.find("Not written: permission denied: &lt;users exist&gt;"), std::string::npos);
}

}  // namespace
}  // namespace citycard::reports
