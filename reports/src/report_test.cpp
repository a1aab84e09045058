#include "citycard/reports/report.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace citycard::reports {
namespace {

RunSummary sample(bool fail) {
  RunSummary s;
  s.scenario = "smoke";
  s.scenario_path = "scenarios/smoke.lua";
  s.seed = 11;
  s.swipes = 2;
  s.ledger_balanced = true;
  s.trace_digest = "ab";
  s.replay_command = "citycard run scenarios/smoke.lua --seed 11";
  s.expectations.push_back({"swipes happened", true, "", "smoke.lua:3", 0});
  if (fail) s.expectations.push_back({"no refusals <x>", false, "2 refused", "smoke.lua:4", 0});
  return s;
}

std::string write_run(const RunSummary& s) {
  const std::string dir = ::testing::TempDir() + "run_" + std::to_string(s.expectations.size());
  std::filesystem::create_directories(dir);
  EXPECT_TRUE(write_text_file(dir + "/summary.json", to_json(s).dump(2)).is_ok());
  EXPECT_TRUE(write_text_file(
                  dir + "/trace.jsonl",
                  "{\"ev\":\"swipe\",\"ok\":true,\"route\":\"R1\",\"vehicle\":\"B1\","
                  "\"amount_fen\":200,\"t_us\":1}\n"
                  "{\"ev\":\"swipe\",\"ok\":false,\"reason\":\"insufficient balance\",\"t_us\":"
                  "61000000}\n"
                  "{\"ev\":\"upload_ack\",\"accepted\":1,\"duplicates\":0,\"rejected\":0,"
                  "\"t_us\":62000000}\n")
                  .is_ok());
  return dir;
}

TEST(Report, SummaryJsonRoundTrips) {
  RunSummary s = sample(true);
  auto back = summary_from_json(to_json(s));
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(back->failed(), 1u);
  EXPECT_EQ(back->seed, 11u);
  EXPECT_FALSE(back->ok());
  EXPECT_EQ(to_json(s)["expectations"]["failed"], 1);
  EXPECT_FALSE(summary_from_json(Json{{"seed", 1}}).is_ok());
}

TEST(Report, AggregatesTheTrace) {
  const std::string dir = write_run(sample(false));
  auto st = aggregate_trace(dir + "/trace.jsonl");
  ASSERT_TRUE(st.is_ok());
  EXPECT_EQ(st->per_route.at("R1").swipes, 1u);
  EXPECT_EQ(st->per_minute.at(0).swipes, 1u);
  EXPECT_EQ(st->per_minute.at(1).refusals, 1u);
  EXPECT_EQ(st->refusal_reasons.at("insufficient balance"), 1u);
  EXPECT_EQ(st->records_accepted, 1u);
}

TEST(Report, MalformedTraceLineIsAnErrorNamingTheLine) {
  const std::string path = ::testing::TempDir() + "bad_trace.jsonl";
  ASSERT_TRUE(write_text_file(path, "{\"ev\":\"swipe\"}\nnot json\n").is_ok());
  auto st = aggregate_trace(path);
  EXPECT_EQ(st.status().code(), Errc::kMalformed);
  EXPECT_NE(st.status().message().find(":2:"), std::string::npos);
}

TEST(Report, FailingRunPutsFailuresFirstInHtmlAndJunit) {
  const std::string dir = write_run(sample(true));
  ASSERT_TRUE(render_run(dir).is_ok());
  auto html = read_text_file(dir + "/report.html");
  ASSERT_TRUE(html.is_ok());
  const auto failures = html->find("What failed");
  ASSERT_NE(failures, std::string::npos);
  EXPECT_LT(failures, html->find("Seed and knobs"));
  EXPECT_NE(html->find("no refusals &lt;x&gt;"), std::string::npos);
  EXPECT_EQ(html->find("<script"), std::string::npos);  // self-contained, no scripts
  auto junit = read_text_file(dir + "/junit.xml");
  ASSERT_TRUE(junit.is_ok());
  EXPECT_NE(junit->find("failures=\"1\""), std::string::npos);
  EXPECT_NE(junit->find("seed 11"), std::string::npos);
}

TEST(Report, PassingRunHasNoFailureSection) {
  const std::string dir = write_run(sample(false));
  ASSERT_TRUE(render_run(dir).is_ok());
  auto html = read_text_file(dir + "/report.html");
  EXPECT_EQ(html->find("What failed"), std::string::npos);
  EXPECT_NE(html->find("PASS"), std::string::npos);
}

TEST(Report, MissingRunDirIsAnError) {
  EXPECT_EQ(render_run("/nonexistent/run").code(), Errc::kNotFound);
}

}  // namespace
}  // namespace citycard::reports

namespace citycard::reports {
namespace {

TEST(ReportTrace, WrongTypeOfAKnownFieldAndTornLastLineAreMalformed) {
  const std::string a = ::testing::TempDir() + "wrong_type.jsonl";
  ASSERT_TRUE(write_text_file(a, "{\"ev\":\"swipe\",\"ok\":\"yes\",\"t_us\":1}\n").is_ok());
  EXPECT_EQ(aggregate_trace(a).status().code(), Errc::kMalformed);
  const std::string b = ::testing::TempDir() + "torn.jsonl";
  ASSERT_TRUE(write_text_file(b, "{\"ev\":\"swipe\",\"ok\":true,\"t_us\":1}\n{\"ev\":\"sw").is_ok());
  auto st = aggregate_trace(b);
  EXPECT_EQ(st.status().code(), Errc::kMalformed);
  EXPECT_NE(st.status().message().find(":2:"), std::string::npos) << st.status().message();
}

TEST(ReportTrace, LinesSpanningChunkBoundariesAreCounted) {
  // Many small lines: the chunked reader must neither drop nor double a line at a boundary.
  const std::string p = ::testing::TempDir() + "many.jsonl";
  std::string text;
  for (int i = 0; i < 200000; ++i) {  // ~12 MB
    text += "{\"amount_fen\":3,\"ev\":\"swipe\",\"ok\":true,\"route\":\"R" + std::to_string(i % 7) +
            "\",\"t_us\":" + std::to_string(i) + "}\n";
  }
  ASSERT_TRUE(write_text_file(p, text).is_ok());
  auto st = aggregate_trace(p, 4093);  // a prime: boundaries fall everywhere in a line
  ASSERT_TRUE(st.is_ok()) << st.status().to_string();
  EXPECT_EQ(st->lines, 200000u);
  std::int64_t total = 0;
  for (const auto& [route, g] : st->per_route) total += g.amount_fen;
  EXPECT_EQ(total, 600000);
}

}  // namespace
}  // namespace citycard::reports

namespace citycard::reports {
namespace {

std::string make_diff_run(const std::string& name, bool second_passes, int r1_swipes) {
  const std::string dir = ::testing::TempDir() + "diff_" + name;
  std::filesystem::create_directories(dir);
  RunSummary s;
  s.scenario = "smoke";
  s.seed = 1;
  s.swipes = static_cast<std::uint64_t>(r1_swipes);
  s.ledger_balanced = true;
  s.trace_digest = name;
  s.expectations.push_back({"always", true, "", "x.lua:1", 0});
  s.expectations.push_back({"sometimes", second_passes, "", "x.lua:2", 0});
  EXPECT_TRUE(write_text_file(dir + "/summary.json", to_json(s).dump()).is_ok());
  std::string trace;
  for (int i = 0; i < r1_swipes; ++i) {
    trace += "{\"amount_fen\":200,\"ev\":\"swipe\",\"ok\":true,\"route\":\"R1\",\"t_us\":1}\n";
  }
  EXPECT_TRUE(write_text_file(dir + "/trace.jsonl", trace).is_ok());
  return dir;
}

TEST(ReportDiff, NamesRegressionsFixesAndFigureChanges) {
  const std::string a = make_diff_run("a", true, 10);
  const std::string b = make_diff_run("b", false, 12);
  auto d = diff_runs(a, b);
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(d->regressions, 1u);
  EXPECT_EQ(d->fixes, 0u);
  EXPECT_FALSE(d->same_trace);
  EXPECT_NE(d->text.find("sometimes: pass -> FAIL"), std::string::npos) << d->text;
  EXPECT_NE(d->text.find("+2 (+20.0%)"), std::string::npos) << d->text;
  auto back = diff_runs(b, a);
  EXPECT_EQ(back->fixes, 1u);
  EXPECT_EQ(back->regressions, 0u);
  auto same = diff_runs(a, a);
  EXPECT_TRUE(same->same_trace);
  EXPECT_NE(same->text.find("(no verdict changed)"), std::string::npos);
  EXPECT_FALSE(diff_runs(a, "/nonexistent").is_ok());
}

}  // namespace
}  // namespace citycard::reports

namespace citycard::reports {
namespace {

TEST(ReportClearing, CsvAndReconciliationListEveryDifferenceAndTheTearLog) {
  const std::string dir = ::testing::TempDir() + "clearing_run";
  std::filesystem::create_directories(dir);
  RunSummary s;
  s.scenario = "c";
  s.seed = 1;
  s.ledger_balanced = true;
  s.expectations.push_back({"x", true, "", "", 0});
  ASSERT_TRUE(write_text_file(dir + "/summary.json", to_json(s).dump()).is_ok());
  ASSERT_TRUE(write_text_file(
                  dir + "/trace.jsonl",
                  "{\"amount_fen\":200,\"ev\":\"swipe\",\"ok\":true,\"route\":\"R1\",\"t_us\":1}\n"
                  "{\"amount_fen\":200,\"ev\":\"swipe\",\"ok\":true,\"route\":\"R2\",\"t_us\":2,"
                  "\"recovered\":true,\"card\":\"0102\",\"vehicle\":\"R2-B1\"}\n"
                  "{\"ev\":\"swipe\",\"ok\":false,\"reason\":\"torn\",\"route\":\"R2\",\"t_us\":3,"
                  "\"card\":\"0103\",\"vehicle\":\"R2-B1\"}\n"
                  "{\"amount_fen\":200,\"count\":1,\"ev\":\"clearing\",\"operator\":\"bus,co\","
                  "\"route\":\"R1\",\"t_us\":9}\n"
                  "{\"amount_fen\":0,\"count\":0,\"ev\":\"clearing\",\"operator\":\"bus,co\","
                  "\"route\":\"R2\",\"t_us\":9}\n")
                  .is_ok());
  ASSERT_TRUE(render_run(dir).is_ok());
  auto csv = read_text_file(dir + "/clearing.csv");
  ASSERT_TRUE(csv.is_ok());
  EXPECT_EQ(*csv,
            "operator,route,swipes,amount_fen,amount_yuan\n"
            "\"bus,co\",R1,1,200,2.00\n"
            "\"bus,co\",R2,0,0,0.00\n");
  auto html = read_text_file(dir + "/report.html");
  EXPECT_NE(html->find("Clearing and reconciliation"), std::string::npos);
  EXPECT_NE(html->find("-2.00"), std::string::npos);  // R2: 2 yuan sold, nothing cleared
  EXPECT_NE(html->find("Tearing and recovery"), std::string::npos);
  EXPECT_NE(html->find("GET TRANSACTION PROVE"), std::string::npos);
  EXPECT_NE(html->find("card left the field"), std::string::npos);
}

}  // namespace
}  // namespace citycard::reports
