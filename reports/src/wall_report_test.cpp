#include "citycard/reports/wall_report.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "citycard/reports/report.h"
#include "citycard/reports/run_summary.h"
#include "junit_check.h"
#include "test_fixtures.h"

namespace citycard::reports {
namespace {

using testing::junit_problems;
using testing::sample_load_summary;
namespace fs = std::filesystem;

std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0, pos = 0;
  while ((pos = s.find(what, pos)) != std::string::npos) ++n, ++pos;
  return n;
}

std::string write_load_run(const std::string& name, const Json& s) {
  const std::string dir = ::testing::TempDir() + "load_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  EXPECT_TRUE(write_text_file(dir + "/summary.json", s.dump(2)).is_ok());
  return dir;
}

TEST(WallReport, RecognisesALoadSummary) {
  EXPECT_TRUE(is_load_summary(sample_load_summary(false, false)));
  EXPECT_FALSE(is_load_summary(Json{{"scenario", "smoke"}, {"seed", 1}}));
  EXPECT_FALSE(is_load_summary(Json::array()));
}

TEST(WallReport, PassingRunHasRatesPercentilesDistributionAndOperations) {
  const std::string html = load_html_report(sample_load_summary(false, false));
  EXPECT_NE(html.find("PASS · rush_hour · wall-time load"), std::string::npos);
  EXPECT_EQ(html.find("What failed"), std::string::npos);
  EXPECT_NE(html.find("Offered and achieved rate per window"), std::string::npos);
  EXPECT_NE(html.find("Latency percentiles per window"), std::string::npos);
  // Legends and axis labels with units.
  for (const char* text : {">offered (/s)<", ">achieved (/s)<", ">p50<", ">p99<", ">p99.9<",
                           ">wall time since start (s)<", ">rate (per second)<", ">latency (ms)<",
                           ">latency (ms), bins 1-2-5 per decade<"}) {
    EXPECT_NE(html.find(text), std::string::npos) << text;
  }
  EXPECT_NE(html.find("id='distribution'"), std::string::npos);
  EXPECT_EQ(count(html, "<svg"), 3u);  // rate, latency, distribution: no sweep here
  // The per-operation table: a row per op with its percentiles.
  EXPECT_NE(html.find("<td>balance_query</td>"), std::string::npos);
  EXPECT_NE(html.find("<td class='num'>30.00</td>"), std::string::npos);  // its p99.9
  EXPECT_EQ(html.find("id='saturation'"), std::string::npos);
  EXPECT_NE(html.find("seed 42"), std::string::npos);
  EXPECT_EQ(html.find("http"), html.find("http://www.w3.org/2000/svg"))
      << "nothing but the SVG namespace refers to the network";
}

TEST(WallReport, FailingRunPutsTheFailedChecksFirst) {
  const std::string html = load_html_report(sample_load_summary(false, true));
  const auto failed = html.find("What failed");
  ASSERT_NE(failed, std::string::npos);
  EXPECT_LT(failed, html.find("Offered and achieved"));
  EXPECT_NE(html.find("17 errors"), std::string::npos);
  EXPECT_NE(html.find("TIMEOUT"), std::string::npos);
  EXPECT_NE(html.find("citycard load scenarios/rush_hour.lua --seed 42"), std::string::npos);
  EXPECT_NE(html.find("<td class='num bad'>17</td>"), std::string::npos);  // the op's errors
}

TEST(WallReport, SweepHasTheSaturationCurveAndStepTable) {
  const Json s = sample_load_summary(true, false);
  const std::string html = load_html_report(s);
  ASSERT_NE(html.find("id='saturation'"), std::string::npos);
  EXPECT_NE(html.find("Achieved against offered"), std::string::npos);
  EXPECT_NE(html.find("Latency against offered rate"), std::string::npos);
  EXPECT_NE(html.find(">offered rate (per second)<"), std::string::npos);
  EXPECT_EQ(count(html, "'bad'>saturated"), 1u);
  EXPECT_EQ(count(html, "'ok'>yes"), 2u);
  EXPECT_EQ(count(html, "<svg"), 5u);
  EXPECT_NE(html.find("the sweep&#39;s steps end to end"), std::string::npos);
  // A sweep only fails on the books: errors at saturation are what it is looking for.
  for (const auto& c : load_checks(s)) EXPECT_NE(c.name, "nothing refused");
  const std::string csv = load_sweep_csv(s);
  EXPECT_EQ(count(csv, "\n"), 4u);
  EXPECT_NE(csv.find("2,15000,14970,11000,1.5,340,900,1000,0,11150,true\n"), std::string::npos)
      << csv;
}

TEST(WallReport, OpsCsvHasARowPerOperation) {
  const std::string csv = load_ops_csv(sample_load_summary(false, true));
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "op,planned,sent,ok,errors,timeouts,refused,late,offered_per_s,achieved_per_s,"
            "p50_ms,p90_ms,p99_ms,p999_ms,max_ms");
  EXPECT_NE(csv.find("\nbalance_query,1960,1960,1943,17,17,0,3,490,466.7,0.5,1.2,6.5,30,44\n"),
            std::string::npos)
      << csv;
  EXPECT_EQ(count(csv, "\n"), 3u);
}

TEST(WallReport, RenderRunDispatchesALoadFolder) {
  const std::string dir = write_load_run("sweep", sample_load_summary(true, false));
  ASSERT_TRUE(render_run(dir).is_ok());
  for (const char* f : {"report.html", "junit.xml", "ops.csv", "sweep.csv"}) {
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  }
  EXPECT_FALSE(fs::exists(dir + "/clearing.csv"));
  const std::string plain = write_load_run("plain", sample_load_summary(false, false));
  ASSERT_TRUE(render_run(plain).is_ok());
  EXPECT_FALSE(fs::exists(plain + "/sweep.csv"));
}

TEST(WallReport, RenderRunOfAFolderWithAMalformedSummaryIsAnError) {
  const std::string dir = ::testing::TempDir() + "load_bad";
  fs::create_directories(dir);
  ASSERT_TRUE(write_text_file(dir + "/summary.json", "{\"tool\": \"citycard load\"").is_ok());
  const Status s = render_run(dir);
  EXPECT_FALSE(s.is_ok());
  EXPECT_FALSE(fs::exists(dir + "/report.html"));
}

TEST(WallReport, DiffOfTwoLoadRunsNamesTheRegressionAndTheFigures) {
  const std::string a = write_load_run("diff_a", sample_load_summary(false, false));
  const std::string b = write_load_run("diff_b", sample_load_summary(false, true));
  auto d = diff_runs(a, b);
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(d->regressions, 1u);
  EXPECT_EQ(d->fixes, 0u);
  EXPECT_NE(d->text.find("! no errors: pass -> FAIL"), std::string::npos) << d->text;
  EXPECT_NE(d->text.find("achieved_per_s"), std::string::npos);
  EXPECT_NE(d->text.find("(-17.8%)"), std::string::npos) << d->text;  // 4985 -> 4100
  auto back = diff_runs(b, a);
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(back->fixes, 1u);
  EXPECT_EQ(back->regressions, 0u);
}

TEST(WallReport, DiffOfALoadRunAndAScenarioRunIsAnError) {
  const std::string a = write_load_run("mixed_a", sample_load_summary(false, false));
  const std::string b = ::testing::TempDir() + "load_mixed_b";
  fs::create_directories(b);
  RunSummary s;
  s.scenario = "smoke";
  s.seed = 1;
  ASSERT_TRUE(write_text_file(b + "/summary.json", to_json(s).dump()).is_ok());
  auto d = diff_runs(a, b);
  ASSERT_FALSE(d.is_ok());
  EXPECT_EQ(d.status().code(), Errc::kInvalidArgument);
}

// --- JUnit: the structure Jenkins and GitLab accept ---

TEST(Junit, TheCheckerFindsWhatJenkinsAndGitlabWouldRefuse) {
  EXPECT_FALSE(junit_problems("<testsuites").empty());
  EXPECT_FALSE(junit_problems("<testsuite name='x' tests='0' failures='0' errors='0' time='0'/>")
                   .empty());  // the root must be <testsuites>
  const std::string no_message =
      "<testsuites tests='1' failures='1' errors='0' time='0'><testsuite name='s' tests='1' "
      "failures='1' errors='0' time='0'><testcase classname='s' name='c' time='0'>"
      "<failure type='t'>body</failure></testcase></testsuite></testsuites>";
  ASSERT_EQ(junit_problems(no_message).size(), 1u);
  EXPECT_NE(junit_problems(no_message)[0].find("without a message"), std::string::npos);
  const std::string bad_counts =
      "<testsuites tests='2' failures='0' errors='0' time='0'><testsuite name='s' tests='2' "
      "failures='0' errors='0' time='x'><testcase name='c' time='0'/></testsuite></testsuites>";
  const auto p = junit_problems(bad_counts);
  EXPECT_EQ(p.size(), 4u);  // time, classname, suite's tests, root's tests
  const std::string good =
      "<testsuites tests='1' failures='0' errors='0' time='1.5'><testsuite name='s' tests='1' "
      "failures='0' errors='0' time='1.5'><testcase classname='s' name='c' time='0'/>"
      "</testsuite></testsuites>";
  EXPECT_TRUE(junit_problems(good).empty());
}

RunSummary scenario_run(std::uint64_t seed, bool fail, bool script_error) {
  RunSummary s;
  s.scenario = "smoke & co";
  s.seed = seed;
  s.ledger_balanced = true;
  s.wall_duration_s = 0.25;
  s.replay_command = "citycard run scenarios/smoke.lua --seed " + std::to_string(seed);
  s.expectations.push_back({"ledger balanced", true, "", "smoke.lua:3", 0});
  if (fail) s.expectations.push_back({"no refusals <R1>", false, "3 refused", "smoke.lua:4", 0});
  if (script_error) s.error = "smoke.lua:9: attempt to index a nil value";
  return s;
}

TEST(Junit, ScenarioRunsAreAcceptedWithTheSeedInEveryFailure) {
  const std::string xml = junit_xml(
      {scenario_run(7, false, false), scenario_run(8, true, false), scenario_run(9, true, true)},
      "citycard");
  const auto problems = junit_problems(xml);
  EXPECT_TRUE(problems.empty()) << problems.front() << "\n" << xml;
  EXPECT_NE(xml.find("tests=\"6\" failures=\"2\" errors=\"1\""), std::string::npos) << xml;
  // The seed in each failure's body and in the suite's properties.
  EXPECT_NE(xml.find("3 refused\nseed 8; replay: citycard run scenarios/smoke.lua --seed 8"),
            std::string::npos);
  EXPECT_NE(xml.find("3 refused\nseed 9;"), std::string::npos);
  EXPECT_NE(xml.find("attempt to index a nil value\nseed 9"), std::string::npos);
  EXPECT_EQ(count(xml, "<property name=\"seed\""), 3u);
  // And in each failure's message, which Jenkins and GitLab show first.
  EXPECT_NE(xml.find("message=\"3 refused (seed 8)\""), std::string::npos);
  EXPECT_NE(xml.find("message=\"smoke.lua:9: attempt to index a nil value (seed 9)\""),
            std::string::npos);
}

TEST(Junit, LoadRunsAreAcceptedWithTheSeedInEveryFailure) {
  const std::string pass = load_junit_xml(sample_load_summary(false, false));
  EXPECT_TRUE(junit_problems(pass).empty()) << pass;
  EXPECT_EQ(count(pass, "<failure"), 0u);
  const std::string fail = load_junit_xml(sample_load_summary(false, true));
  const auto problems = junit_problems(fail);
  EXPECT_TRUE(problems.empty()) << problems.front() << "\n" << fail;
  EXPECT_EQ(count(fail, "<failure"), 1u);
  EXPECT_NE(fail.find("message=\"17 errors (error replies, timeouts, records refused) (seed 42)\""),
            std::string::npos)
      << fail;
  EXPECT_TRUE(junit_problems(load_junit_xml(sample_load_summary(true, false))).empty());
}

}  // namespace
}  // namespace citycard::reports
