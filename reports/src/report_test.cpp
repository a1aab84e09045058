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
