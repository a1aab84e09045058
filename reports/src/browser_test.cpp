// The HTML report in a real browser: Debian's headless Chromium loads it from disk, and the
// test checks what a person would see (the DOM's text) and that the page logged nothing to the
// console. A screenshot is kept as a test artifact in <build>/test-artifacts/.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "citycard/reports/report.h"
#include "citycard/reports/trace.h"
#include "citycard/reports/wall_report.h"
#include "test_fixtures.h"

namespace citycard::reports {
namespace {

namespace fs = std::filesystem;

const char* kChromium = "/usr/bin/chromium";

struct BrowserRun {
  int exit_code = -1;
  std::string dom;
  std::string log;
};

// Loads `page` in headless Chromium; returns the serialised DOM and the browser's log.
BrowserRun load_in_chromium(const std::string& page, const std::string& work,
                            const std::string& screenshot = "") {
  fs::create_directories(work);
  const std::string flags =
      " --headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run"
      " --disable-background-networking --disable-component-update --disable-sync"
      " --hide-scrollbars --enable-logging=stderr --v=0 --user-data-dir=" +
      work + "/profile";
  BrowserRun r;
  const std::string cmd = std::string("timeout 120 ") + kChromium + flags + " --dump-dom file://" +
                          page + " > " + work + "/dom.html 2> " + work + "/log.txt";
  r.exit_code = WEXITSTATUS(std::system(cmd.c_str()));
  if (auto dom = read_text_file(work + "/dom.html"); dom) r.dom = *dom;
  if (auto log = read_text_file(work + "/log.txt"); log) r.log = *log;
  if (!screenshot.empty()) {
    const std::string shot = std::string("timeout 120 ") + kChromium + flags +
                             " --window-size=1200,2400 --screenshot=" + screenshot + " file://" +
                             page + " >/dev/null 2>&1";
    (void)std::system(shot.c_str());
  }
  return r;
}

// Console output of the page, as Chromium logs it ("INFO:CONSOLE(..)" lines).
std::string console_lines(const std::string& log) {
  std::string out;
  std::size_t pos = 0;
  while ((pos = log.find("CONSOLE", pos)) != std::string::npos) {
    const std::size_t start = log.rfind('\n', pos);
    const std::size_t end = log.find('\n', pos);
    out += log.substr(start == std::string::npos ? 0 : start + 1,
                      end == std::string::npos ? std::string::npos : end - start);
    pos = end == std::string::npos ? log.size() : end;
  }
  return out;
}

class Browser : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kChromium))
        << "Debian's chromium is not installed: run .ci/setup (the README's set-up)";
    work = ::testing::TempDir() + "browser_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(work);
    fs::create_directories(work);
  }
  std::string work;
};

// A failing run with a realistic trace: two routes over ten minutes, refusals, uploads.
std::string make_run(const std::string& dir) {
  fs::create_directories(dir);
  auto trace = TraceWriter::open(dir + "/trace.jsonl");
  for (int i = 0; i < 600; ++i) {
    const bool ok = i % 17 != 0;
    Json ev{{"route", i % 2 ? "R1" : "R2"}, {"vehicle", i % 2 ? "R1-B1" : "R2-B1"}, {"ok", ok}};
    if (ok) ev["amount_fen"] = 200;
    if (!ok) ev["reason"] = "insufficient balance";
    (*trace)->event(std::int64_t{i} * 1'000'000, "swipe", ev);
  }
  (*trace)->event(600'000'000, "upload_ack",
                  {{"accepted", 564}, {"duplicates", 0}, {"rejected", 0}});
  RunSummary s;
  s.scenario = "browser-check";
  s.scenario_path = "scenarios/browser.lua";
  s.description = "a run made for the browser test";
  s.seed = 77;
  s.swipes = 564;
  s.refusals = 36;
  s.ledger_balanced = true;
  s.trace_digest = (*trace)->digest_hex();
  s.replay_command = "citycard run scenarios/browser.lua --seed 77";
  s.expectations.push_back({"ledger balanced", true, "", "browser.lua:9", 0});
  s.expectations.push_back({"no refusals", false, "36 refused", "browser.lua:10", 0});
  EXPECT_TRUE((*trace)->close().is_ok());
  EXPECT_TRUE(write_text_file(dir + "/summary.json", to_json(s).dump()).is_ok());
  EXPECT_TRUE(render_run(dir).is_ok());
  return dir + "/report.html";
}

TEST_F(Browser, ReportRendersWithItsTextAndNoConsoleErrors) {
  const std::string page = make_run(work + "/run");
  const std::string artifacts = std::string(CITYCARD_BINARY_DIR) + "/test-artifacts";
  fs::create_directories(artifacts);
  BrowserRun r = load_in_chromium(page, work + "/chromium", artifacts + "/report.png");
  ASSERT_EQ(r.exit_code, 0) << r.log;
  EXPECT_NE(r.dom.find("FAIL · browser-check"), std::string::npos);
  EXPECT_NE(r.dom.find("What failed"), std::string::npos);
  EXPECT_NE(r.dom.find("no refusals"), std::string::npos);
  EXPECT_NE(r.dom.find("citycard run scenarios/browser.lua --seed 77"), std::string::npos);
  EXPECT_NE(r.dom.find("Swipes per minute"), std::string::npos);
  EXPECT_NE(r.dom.find("<svg"), std::string::npos);
  EXPECT_EQ(console_lines(r.log), "") << "the page logged to the console";
  EXPECT_TRUE(fs::exists(artifacts + "/report.png"));
}

// A wall-time load run (a sweep): its folder has only summary.json; render_run() writes the
// load report, and the browser shows its charts and tables.
TEST_F(Browser, WallTimeLoadReportRendersItsChartsAndTables) {
  const std::string dir = work + "/load";
  fs::create_directories(dir);
  ASSERT_TRUE(
      write_text_file(dir + "/summary.json", testing::sample_load_summary(true, true).dump())
          .is_ok());
  ASSERT_TRUE(render_run(dir).is_ok());
  const std::string artifacts = std::string(CITYCARD_BINARY_DIR) + "/test-artifacts";
  fs::create_directories(artifacts);
  BrowserRun r =
      load_in_chromium(dir + "/report.html", work + "/chromium", artifacts + "/load_report.png");
  ASSERT_EQ(r.exit_code, 0) << r.log;
  for (const char* text :
       {"FAIL · rush_hour · wall-time load", "What failed", "Offered and achieved rate per window",
        "Latency percentiles per window", "Latency distribution", "Per operation", "balance_query",
        "Saturation curve", "Achieved against offered", "offered (/s)", "latency (ms)"}) {
    EXPECT_NE(r.dom.find(text), std::string::npos) << text;
  }
  // The browser parsed every chart as SVG (five: rate, latency, distribution, two sweep).
  std::size_t svgs = 0, pos = 0;
  while ((pos = r.dom.find("<svg", pos)) != std::string::npos) ++svgs, ++pos;
  EXPECT_EQ(svgs, 5u);
  EXPECT_EQ(console_lines(r.log), "") << "the page logged to the console";
  EXPECT_TRUE(fs::exists(artifacts + "/load_report.png"));
}

// The console check must be able to fail: a page that logs an error is caught.
TEST_F(Browser, ConsoleCheckCatchesAPageThatLogsAnError) {
  const std::string page = work + "/bad.html";
  ASSERT_TRUE(write_text_file(page,
                              "<!DOCTYPE html><html><body><p>x</p>"
                              "<script>console.error('broken chart')</script></body></html>")
                  .is_ok());
  BrowserRun r = load_in_chromium(page, work + "/chromium");
  ASSERT_EQ(r.exit_code, 0) << r.log;
  EXPECT_NE(console_lines(r.log).find("broken chart"), std::string::npos) << r.log;
}

}  // namespace
}  // namespace citycard::reports
