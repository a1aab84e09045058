#include "citycard/scenarios/runner.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <sstream>

#include "citycard/reports/report.h"

namespace citycard::scenarios {
namespace {

namespace fs = std::filesystem;

class Runner : public ::testing::Test {
 protected:
  // Writes a scenario into a fresh folder with the real scenario library beside it.
  std::string scenario(const std::string& name, const std::string& code) {
    dir = ::testing::TempDir() + "runner_" +
          ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir);
    fs::create_directories(dir + "/lib");
    fs::copy_file(std::string(CITYCARD_SOURCE_DIR) + "/scenarios/lib/fares.lua",
                  dir + "/lib/fares.lua");
    std::ofstream(dir + "/" + name) << code;
    return dir + "/" + name;
  }
  RunOutcome run(const std::string& path, std::uint64_t seed, const std::string& out) {
    RunOptions o;
    o.scenario_path = path;
    o.seed = seed;
    o.out_dir = dir + "/" + out;
    o.lib_root = dir;
    return run_scenario(o);
  }
  std::string dir;
};

const char* kSmallCity = R"(
describe { name = "small", desc = "test city", tags = { "t" } }
city { start = "2026-11-23 07:00", cards = { count = 150, balance_fen = { min = 100, max = 3000 } },
       routes = { count = 2, buses_per_route = 2, fare_fen = 200 }, upload_interval_s = 30 }
phase { from = "07:00", to = "07:20", swipes_per_hour = 3000 }
run_until "07:20"
drain()
local s = stats()
)";

TEST_F(Runner, PassingScenarioWritesEveryReport) {
  auto o = run(scenario("ok.lua", std::string(kSmallCity) +
                                      "expect('swipes', s.swipes > 100)\n"
                                      "expect('balanced', ledger().balanced)\n"),
               7, "run");
  EXPECT_EQ(o.exit_code, kExitPass) << o.summary.error;
  EXPECT_EQ(o.summary.scenario, "small");
  EXPECT_EQ(o.summary.failed(), 0u);
  EXPECT_GT(o.summary.swipes, 100u);
  EXPECT_TRUE(o.summary.ledger_balanced);
  for (const char* f : {"trace.jsonl", "summary.json", "junit.xml", "report.html"}) {
    EXPECT_TRUE(fs::exists(dir + "/run/" + f)) << f;
  }
  auto json = reports::read_text_file(dir + "/run/summary.json");
  for (const char* key : {"\"seed\"", "\"swipes\"", "\"swipes_per_s_wall\"",
                          "\"virtual_duration_s\"", "\"trace_digest\"", "\"balanced\""}) {
    EXPECT_NE(json->find(key), std::string::npos) << key;
  }
}

// city{ trace_apdus = true } puts every exchange of every tap into the trace, in order: a tap
// starts with SELECT and a sale has INITIALIZE FOR PURCHASE and DEBIT FOR PURCHASE answered
// 9000, each with its simulated duration; without the knob there are none.
TEST_F(Runner, TraceApdusRecordsEveryExchangeOfATap) {
  const std::string city = R"(
city { start = "2026-11-23 07:00", cards = { count = 20, balance_fen = { min = 1000, max = 1000 } },
       routes = { count = 1, buses_per_route = 1, fare_fen = 200 }, trace_apdus = TRACE }
phase { from = "07:00", to = "07:02", swipes_per_hour = 300 }
run_until("07:05")
expect('swipes', stats().swipes > 0)
)";
  auto with = [&](const char* flag) {
    std::string code = city;
    code.replace(code.find("TRACE"), 5, flag);
    return code;
  };
  auto on = run(scenario("apdus.lua", with("true")), 3, "on");
  ASSERT_EQ(on.exit_code, kExitPass) << on.summary.error;
  auto trace = reports::read_text_file(dir + "/on/trace.jsonl");
  ASSERT_TRUE(trace.is_ok());
  std::istringstream lines(*trace);
  std::string line, previous_event;
  int apdus = 0, taps_starting_with_select = 0, swipes = 0, inits = 0, debits = 0;
  while (std::getline(lines, line)) {
    const bool apdu = line.find("\"ev\":\"apdu\"") != std::string::npos;
    if (apdu) {
      ++apdus;
      EXPECT_NE(line.find("\"terminal\":\"R1-B1\""), std::string::npos) << line;
      EXPECT_NE(line.find("\"us\":"), std::string::npos) << line;
      if (previous_event != "apdu" && line.find("\"command\":\"00a4") != std::string::npos) {
        ++taps_starting_with_select;
      }
      if (line.find("\"command\":\"805001") != std::string::npos &&
          line.find("\"sw\":\"9000") != std::string::npos) {
        ++inits;
      }
      if (line.find("\"command\":\"805401") != std::string::npos &&
          line.find("\"sw\":\"9000") != std::string::npos) {
        ++debits;
      }
    }
    if (line.find("\"ev\":\"swipe\"") != std::string::npos && line.find("\"ok\":true") != std::string::npos) {
      ++swipes;
    }
    previous_event = apdu ? "apdu" : "other";
  }
  ASSERT_GT(swipes, 0);
  EXPECT_GE(apdus, 4 * swipes);  // a sale is at least four exchanges
  EXPECT_GE(taps_starting_with_select, swipes);
  EXPECT_EQ(inits, swipes);
  EXPECT_EQ(debits, swipes);

  auto off = run(scenario("apdus.lua", with("false")), 3, "off");
  ASSERT_EQ(off.exit_code, kExitPass) << off.summary.error;
  auto plain = reports::read_text_file(dir + "/off/trace.jsonl");
  ASSERT_TRUE(plain.is_ok());
  EXPECT_EQ(plain->find("\"ev\":\"apdu\""), std::string::npos);
  EXPECT_EQ(off.summary.swipes, on.summary.swipes) << "tracing changes nothing it traces";
}

// The backend's operator reports go into the trace at the end of the run, and from there into
// report.html and the operator CSVs; the transit totals agree with the clearing by route.
TEST_F(Runner, OperatorReportsGoIntoTheTraceAndTheirCsvs) {
  auto o = run(scenario("op.lua", std::string(kSmallCity) + "expect('swipes', s.swipes > 100)\n"),
               7, "run");
  ASSERT_EQ(o.exit_code, kExitPass) << o.summary.error;
  auto st = reports::aggregate_trace(dir + "/run/trace.jsonl");
  ASSERT_TRUE(st.is_ok());
  std::int64_t issued = -1, purchases = -1;
  std::map<std::string, std::int64_t> transit_route, cleared_route;
  std::size_t vehicles = 0, drivers = 0;
  for (const auto& ev : st->operator_events) {
    const std::string type = ev["ev"];
    if (type == "op_issuance") issued = ev["cards"];
    if (type == "op_transactions") purchases = ev["purchases"];
    if (type == "op_transit" && ev["dimension"] == "route") {
      transit_route[ev["key"]] += ev["amount_fen"].get<std::int64_t>();
    }
    if (type == "op_transit" && ev["dimension"] == "vehicle") ++vehicles;
    if (type == "op_transit" && ev["dimension"] == "driver") ++drivers;
  }
  for (const auto& c : st->cleared) cleared_route[c.route] += c.amount_fen;
  EXPECT_EQ(issued, 150);
  EXPECT_EQ(purchases, static_cast<std::int64_t>(o.summary.swipes));
  EXPECT_EQ(transit_route.size(), 2u);
  EXPECT_EQ(transit_route, cleared_route);
  EXPECT_EQ(vehicles, 4u);  // two routes of two buses
  EXPECT_GE(drivers, 1u);
  for (const char* f : {"issuance.csv", "transactions.csv", "failure_rates.csv", "transit.csv",
                        "terminal_summary.csv"}) {
    EXPECT_TRUE(fs::exists(dir + "/run/" + f)) << f;
  }
  auto html = reports::read_text_file(dir + "/run/report.html");
  ASSERT_TRUE(html.is_ok());
  EXPECT_NE(html->find("id='transit'"), std::string::npos);
  EXPECT_TRUE(o.summary.ledger_balanced);
}

TEST_F(Runner, FailedExpectationExitsOneAndNamesTheReplay) {
  auto o = run(scenario("fail.lua", std::string(kSmallCity) +
                                        "expect('impossible', s.swipes < 0, 'swipes were ' .. s.swipes)\n"),
               9, "run");
  EXPECT_EQ(o.exit_code, kExitFail);
  ASSERT_EQ(o.summary.failed(), 1u);
  const auto& e = o.summary.expectations.front();
  EXPECT_EQ(e.name, "impossible");
  EXPECT_NE(e.message.find("swipes were"), std::string::npos);
  EXPECT_NE(e.where.find("fail.lua:9"), std::string::npos) << e.where;
  EXPECT_NE(o.summary.replay_command.find("--seed 9"), std::string::npos);
  auto junit = reports::read_text_file(dir + "/run/junit.xml");
  EXPECT_NE(junit->find("<failure"), std::string::npos);
}

TEST_F(Runner, SyntaxErrorExitsTwoWithFileAndLineAndMovesNoMoney) {
  auto o = run(scenario("syntax.lua", "describe { name = 'x' }\nlocal = 5\n"), 1, "run");
  EXPECT_EQ(o.exit_code, kExitUsageOrScript);
  EXPECT_NE(o.summary.error.find("syntax.lua:2:"), std::string::npos) << o.summary.error;
  EXPECT_EQ(o.summary.swipes, 0u);
}

TEST_F(Runner, RuntimeErrorMidRunExitsTwoAndTheLedgerStillBalances) {
  auto o = run(scenario("boom.lua", std::string(kSmallCity) + "local x = nil\nlocal y = x.field\n"),
               1, "run");
  EXPECT_EQ(o.exit_code, kExitUsageOrScript);
  EXPECT_NE(o.summary.error.find("boom.lua:10:"), std::string::npos) << o.summary.error;
  EXPECT_TRUE(o.summary.ledger_balanced);  // the automatic check ran after the error
}

TEST_F(Runner, CardMixFromLuaChargesEachTypeItsFareAndStatsSplitByType) {
  auto o = run(scenario("mix.lua", R"(
describe { name = "mix" }
city { cards = { count = 120, balance_fen = { min = 3000, max = 3000 },
                 mix = { adult = 2, student = 1, elder = 1 },
                 discount_bp = { student = 5000, elder = 8000 } },
       routes = { count = 2, buses_per_route = 1, fare_fen = 200 } }
phase { from = "07:00", to = "07:20", swipes_per_hour = 1500 }
run_until "07:20"
drain()
local s = stats()
local t = s.by_type
expect('all issued', t.adult.cards + t.student.cards + t.elder.cards == 120 and t.staff.cards == 0)
expect('adult full', t.adult.swipes > 0 and t.adult.amount_fen == t.adult.swipes * 200)
expect('student half', t.student.swipes > 0 and t.student.amount_fen == t.student.swipes * 100)
expect('elder 80 off', t.elder.swipes > 0 and t.elder.amount_fen == t.elder.swipes * 40)
expect('cleared', s.backend_amount_fen == s.validator_amount_fen)
)"),
               3, "run");
  EXPECT_EQ(o.exit_code, kExitPass) << o.summary.error;
  EXPECT_EQ(o.summary.failed(), 0u);
  auto bad =
      run(scenario("badmix.lua", "city { cards = { mix = { adult = 1, pensioner = 1 } } }\n"), 1,
          "bad");
  EXPECT_EQ(bad.exit_code, kExitUsageOrScript);
  EXPECT_NE(bad.summary.error.find("card types are adult, student, elder, staff"),
            std::string::npos)
      << bad.summary.error;
  auto free = run(scenario("free.lua", "city { cards = { discount_bp = { elder = 10000 } } }\n"), 1,
                  "free");
  EXPECT_EQ(free.exit_code, kExitUsageOrScript);
  EXPECT_NE(free.summary.error.find("cards.discount_bp must be 0..9999"), std::string::npos)
      << free.summary.error;
}

TEST_F(Runner, BadApiArgumentsAreScriptErrorsWithLine) {
  auto o = run(scenario("badarg.lua", "city { cards = { count = 'many' } }\n"), 1, "run");
  EXPECT_EQ(o.exit_code, kExitUsageOrScript);
  EXPECT_NE(o.summary.error.find("badarg.lua:1:"), std::string::npos) << o.summary.error;
  EXPECT_NE(o.summary.error.find("'count' must be a number"), std::string::npos);
  auto p = run(scenario("badphase.lua", std::string(kSmallCity) +
                                            "phase { from = '06:00', to = '07:00', "
                                            "swipes_per_hour = 1 }\n"),
               1, "run2");
  EXPECT_NE(p.summary.error.find("before the city's start"), std::string::npos);
}

TEST_F(Runner, BadRevocationArgumentsAreScriptErrorsWithLine) {
  auto plain = run(scenario("revoke_plain.lua", std::string(kSmallCity) +
                                                    "revoke { terminal = 'R1-B1' }\n"),
                   1, "revoke_plain");
  EXPECT_EQ(plain.exit_code, kExitUsageOrScript);
  EXPECT_NE(plain.summary.error.find("certificates = true"), std::string::npos)
      << plain.summary.error;
  const std::string pki_city =
      "city { cards = { count = 10 }, routes = { count = 1, buses_per_route = 1 },"
      " certificates = true }\n";
  auto reason = run(scenario("revoke_reason.lua",
                             pki_city + "revoke { terminal = 'R1-B1', reason = 'bored' }\n"),
                    1, "revoke_reason");
  EXPECT_EQ(reason.exit_code, kExitUsageOrScript);
  EXPECT_NE(reason.summary.error.find("revoke_reason.lua:2:"), std::string::npos)
      << reason.summary.error;
  EXPECT_NE(reason.summary.error.find("unknown reason 'bored'"), std::string::npos);
  auto who = run(scenario("revoke_who.lua", pki_city + "recommission 'R7-B1'\n"), 1, "who");
  EXPECT_NE(who.summary.error.find("no terminal 'R7-B1'"), std::string::npos)
      << who.summary.error;
  EXPECT_TRUE(who.summary.ledger_balanced);
}

TEST_F(Runner, NoExpectationIsNotAPass) {
  auto o = run(scenario("empty.lua", "describe { name = 'empty' }\n"), 1, "run");
  EXPECT_NE(o.exit_code, kExitPass);
  EXPECT_NE(o.summary.error.find("no expectation"), std::string::npos);
}

TEST_F(Runner, SameSeedSameDigestAcrossRuns) {
  const std::string path = scenario("det.lua", std::string(kSmallCity) +
                                                   "expect('random is seeded', math.random(1, 10) > 0)\n");
  auto a = run(path, 42, "a");
  auto b = run(path, 42, "b");
  auto c = run(path, 43, "c");
  EXPECT_EQ(a.summary.trace_digest, b.summary.trace_digest);
  EXPECT_NE(a.summary.trace_digest, c.summary.trace_digest);
  EXPECT_EQ(a.summary.trace_digest.size(), 64u);
}

TEST_F(Runner, FolderRunsEveryScenarioIntoOneJunitAndFiltersByTag) {
  scenario("a.lua", std::string(kSmallCity) + "expect('ok', true)\n");
  std::ofstream(dir + "/b.lua") << "describe { name = 'b', tags = { 'other' } }\nexpect('ok', true)\n";
  RunOptions o;
  o.scenario_path = dir;
  o.out_dir = dir + "/suite";
  o.lib_root = dir;
  std::vector<RunOutcome> outcomes;
  EXPECT_EQ(run_folder(o, outcomes), kExitPass);
  ASSERT_EQ(outcomes.size(), 2u);
  auto junit = reports::read_text_file(dir + "/suite/junit.xml");
  EXPECT_NE(junit->find("testsuite name=\"small\""), std::string::npos);
  EXPECT_NE(junit->find("testsuite name=\"b\""), std::string::npos);

  o.out_dir = dir + "/tagged";
  o.tags = {"other"};
  outcomes.clear();
  EXPECT_EQ(run_folder(o, outcomes), kExitPass);
  EXPECT_TRUE(outcomes[0].skipped);
  EXPECT_FALSE(outcomes[1].skipped);
}

// The CLI itself, as a user runs it: exit codes and the summary's last line.
TEST(Cli, RunPrintsSummaryEndingInDigestAndExitCodes) {
  const std::string bin = std::string(CITYCARD_BINARY_DIR) + "/citycard";
  const std::string out = ::testing::TempDir() + "cli_run";
  const std::string cmd = bin + " run " + CITYCARD_SOURCE_DIR + "/scenarios/smoke.lua --seed 3 --out " +
                          out + " > " + out + ".txt 2>&1";
  EXPECT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 0);
  auto text = reports::read_text_file(out + ".txt");
  ASSERT_TRUE(text.is_ok());
  EXPECT_NE(text->find("trace digest: "), std::string::npos) << *text;
  EXPECT_NE(text->find("verdict:     PASS"), std::string::npos) << *text;
  EXPECT_NE(text->find("virtual time ran "), std::string::npos) << *text;
  EXPECT_NE(text->find("knobs:       city.buses_per_route="), std::string::npos) << *text;
  EXPECT_EQ(WEXITSTATUS(std::system((bin + " run /nonexistent.lua >/dev/null 2>&1").c_str())), 2);
  EXPECT_EQ(WEXITSTATUS(std::system((bin + " run " + CITYCARD_SOURCE_DIR +
                                     "/scenarios/smoke.lua --seed abc >/dev/null 2>&1")
                                        .c_str())),
            2);
  EXPECT_EQ(WEXITSTATUS(std::system((bin + " frobnicate >/dev/null 2>&1").c_str())), 2);
}

}  // namespace
}  // namespace citycard::scenarios

namespace citycard::scenarios {
namespace {

RunOutcome run_library(const std::string& name, std::uint64_t seed,
                       std::vector<std::string> defects, const std::string& tag) {
  RunOptions o;
  o.scenario_path = std::string(CITYCARD_SOURCE_DIR) + "/scenarios/" + name + ".lua";
  o.seed = seed;
  o.out_dir = ::testing::TempDir() + "library_" + name + "_" + tag;
  o.lib_root = std::string(CITYCARD_SOURCE_DIR) + "/scenarios";
  o.defects = std::move(defects);
  return run_scenario(o);
}

// Each library scenario passes on a sound system and fails when the thing it checks is broken.
struct LibraryCase {
  const char* scenario;
  const char* defect;
};
// How ctest and GoogleTest name a case (instead of its bytes).
void PrintTo(const LibraryCase& c, std::ostream* os) {
  *os << c.scenario << ".lua --defect " << c.defect;
}

class LibraryScenario : public ::testing::TestWithParam<LibraryCase> {};

TEST_P(LibraryScenario, PassesSoundAndFailsWithItsDefect) {
  const LibraryCase& c = GetParam();
  RunOutcome sound = run_library(c.scenario, 5, {}, "sound");
  EXPECT_EQ(sound.exit_code, kExitPass) << sound.summary.error << "\n"
                                        << reports::human_summary(sound.summary);
  RunOutcome broken = run_library(c.scenario, 5, {c.defect}, c.defect);
  EXPECT_EQ(broken.exit_code, kExitFail) << broken.summary.error;
  EXPECT_GT(broken.summary.failed(), 0u);
  EXPECT_NE(broken.summary.replay_command.find(std::string("--defect ") + c.defect),
            std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Library, LibraryScenario,
                         ::testing::Values(LibraryCase{"smoke", "corrupt_tac"},
                                           LibraryCase{"bus_outage", "ack_on_failure"},
                                           LibraryCase{"backend_crash", "backend_amnesia"},
                                           LibraryCase{"lossy_network", "ack_on_failure"},
                                           LibraryCase{"clock_drift", "ack_on_failure"},
                                           LibraryCase{"commuters", "no_transfers"},
                                           LibraryCase{"blacklist_outage", "stale_blacklist"},
                                           LibraryCase{"blacklist_outage", "stale_fares"},
                                           LibraryCase{"settlement_month", "bank_drops_file"},
                                           LibraryCase{"tearing_storm", "retap_elsewhere"},
                                           LibraryCase{"rush_hour_ci", "ack_on_failure"},
                                           LibraryCase{"taxi_shift", "taxi_log_in_ram"},
                                           LibraryCase{"cert_revocation", "ignore_revocation"}),
                         [](const auto& info) { return std::string(info.param.scenario) + "_" + info.param.defect;
                         });

// Determinism: three library scenarios, twice each, same digests.
TEST(Determinism, SameSeedSameDigestForLibraryScenarios) {
  for (const char* name : {"smoke", "backend_crash", "lossy_network"}) {
    RunOutcome a = run_library(name, 21, {}, "det_a");
    RunOutcome b = run_library(name, 21, {}, "det_b");
    EXPECT_EQ(a.summary.trace_digest, b.summary.trace_digest) << name;
    EXPECT_FALSE(a.summary.trace_digest.empty()) << name;
  }
}

TEST(Defects, UnknownDefectIsAUsageError) {
  RunOutcome o = run_library("smoke", 1, {"gremlins"}, "unknown");
  EXPECT_EQ(o.exit_code, kExitUsageOrScript);
  EXPECT_NE(o.summary.error.find("unknown defect 'gremlins'"), std::string::npos);
}

}  // namespace
}  // namespace citycard::scenarios
