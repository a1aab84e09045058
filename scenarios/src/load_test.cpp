// `citycard load` and `citycard agent`: reading a scenario in load mode, merging and carrying
// statistics, and short real runs over loopback tcp (an embedded backend, a coordinator with two
// agents, an external backend process). Runs are a second or two of load: long runs belong to
// the benchmark commands in scenarios/README.md. No assertion here depends on timing.
#include "citycard/scenarios/load.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "citycard/protocol/wire.h"
#include "citycard/reports/report.h"
#include "citycard/sim/rng.h"
#include "citycard/sim/zmq_transport.h"
#include "load_city.h"
#include "load_local.h"
#include "load_ops.h"
#include "load_stats.h"
#include "load_worker.h"
#include "test_process.h"

namespace citycard::scenarios {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kSource = CITYCARD_SOURCE_DIR;
const std::string kBinary = std::string(CITYCARD_BINARY_DIR) + "/citycard";

std::string temp_dir(const std::string& name) {
  const std::string d = std::string(CITYCARD_BINARY_DIR) + "/test-load/" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A small city with the whole mix, for runs of a second or two.
std::string small_scenario(const std::string& dir, const std::string& mix =
                                                       "swipe = 0.8, balance_query = 0.15, "
                                                       "ping = 0.05") {
  const std::string path = dir + "/small.lua";
  std::ofstream(path) << "describe { name = 'small', load = { rate_per_s = 400, duration_s = 2,\n"
                         "  mix = { "
                      << mix
                      << " }, upload_interval_ms = 200, batch_size = 20 } }\n"
                         "city { start = '2026-11-23 07:00',\n"
                         "  cards = { count = 300, balance_fen = { min = 20000, max = 50000 } },\n"
                         "  routes = { count = 2, buses_per_route = 4 } }\n"
                         "phase { from = '07:00', to = '08:00', swipes_per_hour = 1000,\n"
                         "        curve = { 1, 3, 2 } }\n"
                         "faults { link_loss = 0.1 }\n"
                         "run_until '08:00'\n"
                         "expect('never read in load mode', false)\n";
  return path;
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

std::vector<json> read_lines(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

// --- reading a plan ---

TEST(LoadPlan, ReadsTheRushHourScenario) {
  auto plan = read_load_plan(kSource + "/scenarios/rush_hour.lua", kSource + "/scenarios", {});
  ASSERT_TRUE(plan.is_ok()) << plan.status().to_string();
  EXPECT_EQ(plan->scenario, "rush_hour");
  EXPECT_EQ(plan->city.cards, 50000);
  EXPECT_EQ(plan->city.routes * plan->city.buses_per_route, 1000);
  EXPECT_EQ(plan->knobs.duration_us, 20'000'000);
  // Eight half hours compressed into 20 s; the highest one runs at describe's rate_per_s.
  EXPECT_EQ(plan->curve.end_us(), 20'000'000);
  EXPECT_DOUBLE_EQ(plan->curve.peak_per_s(), 5000);
  EXPECT_DOUBLE_EQ(plan->curve.rate_at(0), 500);            // weight 1 of 10
  EXPECT_DOUBLE_EQ(plan->curve.rate_at(13'000'000), 4500);  // weight 9
  EXPECT_EQ(plan->op_names(),
            (std::vector<std::string>{"swipe", "upload", "flush", "balance_query", "ping"}));
}

TEST(LoadPlan, CommandLineOverridesTheScenario) {
  const std::string dir = temp_dir("plan-overrides");
  LoadOverrides o;
  o.rate_per_s = 1000;
  o.duration_us = 6'000'000;
  o.mix = {{"ping", 1.0}};
  o.seed = 9;
  o.buses = 4;
  o.cards = 50;
  auto plan = read_load_plan(small_scenario(dir), dir, o);
  ASSERT_TRUE(plan.is_ok()) << plan.status().to_string();
  EXPECT_DOUBLE_EQ(plan->curve.peak_per_s(), 1000);
  EXPECT_EQ(plan->curve.end_us(), 6'000'000);
  // Weights 1, 3, 2 over thirds: the average is 2/3 of the peak.
  EXPECT_NEAR(plan->curve.expected_arrivals(6'000'000), 6 * 1000 * 2.0 / 3, 1e-6);
  EXPECT_EQ(plan->knobs.seed, 9u);
  EXPECT_EQ(plan->op_names(), (std::vector<std::string>{"swipe", "upload", "flush", "ping"}));
  EXPECT_EQ(plan->ignored, (std::vector<std::string>{"faults"}));
  EXPECT_EQ(plan->city.routes * plan->city.buses_per_route, 4);
  EXPECT_EQ(plan->city.cards, 50);
  // From describe{ load = ... }, not overridden.
  EXPECT_EQ(plan->knobs.batch_size, 20);
  EXPECT_EQ(plan->knobs.upload_interval_us, 200'000);
}

TEST(LoadPlan, AlignedUploadsIsAKnobOffByDefault) {
  const std::string dir = temp_dir("plan-aligned");
  auto plan = read_load_plan(small_scenario(dir), dir, LoadOverrides{});
  ASSERT_TRUE(plan.is_ok()) << plan.status().to_string();
  EXPECT_FALSE(plan->knobs.aligned_uploads);  // each bus on its own timer unless asked
  LoadOverrides o;
  o.aligned_uploads = true;
  plan = read_load_plan(small_scenario(dir), dir, o);
  ASSERT_TRUE(plan.is_ok()) << plan.status().to_string();
  EXPECT_TRUE(plan->knobs.aligned_uploads);
  EXPECT_TRUE(plan->to_json()["knobs"]["aligned_uploads"].get<bool>());
}

// A bus's uploads fall due on its own timer ticks: never before the oldest record, at most one
// interval after it, and always on the bus's phase.
TEST(LoadWorker, UploadTicksKeepTheBusPhaseAndWaitAtMostOneInterval) {
  constexpr std::int64_t kInterval = 1'000'000;
  EXPECT_EQ(upload_tick_at_or_after(250'000, kInterval, 0), 250'000);
  EXPECT_EQ(upload_tick_at_or_after(250'000, kInterval, 250'000), 250'000);  // on a tick
  EXPECT_EQ(upload_tick_at_or_after(250'000, kInterval, 250'001), 1'250'000);
  EXPECT_EQ(upload_tick_at_or_after(250'000, kInterval, 7'900'000), 8'250'000);
  EXPECT_EQ(upload_tick_at_or_after(250'000, kInterval, -1'500'000), -750'000);  // before phase
  EXPECT_EQ(upload_tick_at_or_after(0, kInterval, 3'000'000), 3'000'000);
  sim::Rng rng(7);
  for (int i = 0; i < 1000; ++i) {
    const auto phase = static_cast<std::int64_t>(rng.uniform(kInterval));
    const auto t = static_cast<std::int64_t>(rng.uniform(100 * kInterval)) - 50 * kInterval;
    const std::int64_t due = upload_tick_at_or_after(phase, kInterval, t);
    EXPECT_GE(due, t);
    EXPECT_LT(due - t, kInterval);
    EXPECT_EQ(((due - phase) % kInterval + kInterval) % kInterval, 0);
  }
}

TEST(LoadPlan, WithoutARateThePhasesAreCompressedAsTheyAre) {
  const std::string dir = temp_dir("plan-compressed");
  const std::string path = dir + "/c.lua";
  std::ofstream(path) << "city { start = '2026-11-23 07:00' }\n"
                         "phase { from = '07:00', to = '07:30', swipes_per_hour = 3600 }\n"
                         "run_until '08:00'\n";
  LoadOverrides o;
  o.duration_us = 10'000'000;
  auto plan = read_load_plan(path, dir, o);
  ASSERT_TRUE(plan.is_ok()) << plan.status().to_string();
  // 1,800 swipes in the first half hour, now in the first 5 s; nothing after.
  EXPECT_NEAR(plan->curve.expected_arrivals(10'000'000), 1800, 1e-6);
  EXPECT_DOUBLE_EQ(plan->curve.rate_at(1'000'000), 360);
  EXPECT_DOUBLE_EQ(plan->curve.rate_at(6'000'000), 0);
}

TEST(LoadPlan, RefusesWhatItCannotRun) {
  const std::string dir = temp_dir("plan-bad");
  LoadOverrides unknown_op;
  unknown_op.mix = {{"teleport", 1.0}};
  auto p = read_load_plan(small_scenario(dir), dir, unknown_op);
  EXPECT_FALSE(p.is_ok());
  EXPECT_NE(p.status().message().find("teleport"), std::string::npos);

  std::ofstream(dir + "/nocity.lua") << "describe { name = 'x' }\n";
  EXPECT_FALSE(read_load_plan(dir + "/nocity.lua", dir, {}).is_ok());

  std::ofstream(dir + "/early.lua") << "city { }\nlocal s = stats()\n";
  auto early = read_load_plan(dir + "/early.lua", dir, {});
  EXPECT_FALSE(early.is_ok());
  EXPECT_NE(early.status().message().find("load mode"), std::string::npos);

  LoadOverrides flat_without_rate;
  flat_without_rate.flat = true;
  std::ofstream(dir + "/norate.lua") << "city { }\n";
  EXPECT_FALSE(read_load_plan(dir + "/norate.lua", dir, flat_without_rate).is_ok());
}

TEST(LoadPlan, ParsesMixesAndDurations) {
  auto m = parse_mix("swipe=0.9,balance_query=0.1,ping");
  ASSERT_TRUE(m.is_ok());
  EXPECT_EQ(*m, (std::vector<std::pair<std::string, double>>{
                    {"swipe", 0.9}, {"balance_query", 0.1}, {"ping", 1.0}}));
  EXPECT_FALSE(parse_mix("swipe=lots").is_ok());
  EXPECT_EQ(*parse_duration_us("20s"), 20'000'000);
  EXPECT_EQ(*parse_duration_us("250ms"), 250'000);
  EXPECT_EQ(*parse_duration_us("2m"), 120'000'000);
  EXPECT_EQ(*parse_duration_us("3"), 3'000'000);
  EXPECT_FALSE(parse_duration_us("soon").is_ok());
  EXPECT_FALSE(parse_duration_us("5 parsecs").is_ok());
}

// --- statistics ---

OpStats op_with(std::uint64_t planned, std::initializer_list<std::int64_t> latencies_us) {
  OpStats s;
  s.c.planned = planned;
  s.c.ok = latencies_us.size();
  for (auto v : latencies_us) s.latency.record(v);
  return s;
}

TEST(WindowMerger, ReleasesAWindowOnlyWhenEveryPartHasDeliveredIt) {
  WindowMerger m(2, 1);
  ASSERT_TRUE(m.add(0, WindowStats{0, {op_with(3, {100, 200})}}).is_ok());
  EXPECT_TRUE(m.take_complete().empty());  // part 1 has not delivered window 0
  ASSERT_TRUE(m.add(1, WindowStats{0, {op_with(4, {300})}}).is_ok());
  ASSERT_TRUE(m.add(1, WindowStats{1, {op_with(1, {})}}).is_ok());
  // An agent's window out of order, or with another plan's ops, is refused, not merged.
  EXPECT_EQ(m.add(1, WindowStats{5, {op_with(1, {})}}).code(), Errc::kMalformed);
  EXPECT_EQ(m.add(0, WindowStats{1, {op_with(1, {}), op_with(1, {})}}).code(), Errc::kMalformed);
  auto ready = m.take_complete();
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].index, 0u);
  EXPECT_EQ(ready[0].ops[0].c.planned, 7u);
  EXPECT_EQ(ready[0].ops[0].latency.count(), 3u);
  m.finish(0);  // part 0 is done after window 0: window 1 needs only part 1
  ready = m.take_complete();
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].index, 1u);
  m.finish(1);
  EXPECT_TRUE(m.all_finished());
  EXPECT_TRUE(m.take_complete().empty());
}

TEST(WindowMerger, BoundsTheWindowsHeldForASlowPart) {
  WindowMerger m(2, 1);
  for (std::uint32_t i = 0; i < WindowMerger::kOpenWindowsMax; ++i) {
    ASSERT_TRUE(m.add(0, WindowStats{i, {op_with(1, {})}}).is_ok()) << i;
  }
  // Part 1 has delivered nothing: one more window from part 0 would exceed the bound.
  EXPECT_EQ(m.add(0, WindowStats{WindowMerger::kOpenWindowsMax, {op_with(1, {})}}).code(),
            Errc::kTooLarge);
  // Part 1 catching up merges into open windows, which the bound allows.
  EXPECT_TRUE(m.add(1, WindowStats{0, {op_with(1, {})}}).is_ok());
  EXPECT_EQ(m.take_complete().size(), 1u);
}

TEST(LoadStats, TotalsSurviveTheAgentProtocol) {
  const std::vector<std::string> names{"swipe", "upload", "flush", "ping"};
  LoadTotals t;
  t.ops = {op_with(10, {5, 6}), op_with(2, {40'000}), op_with(1, {90'000}),
           op_with(7, {120, 130, 4'000'000})};
  t.ops[1].c.records_ok = 200;
  t.ops[3].c.timeouts = 1;
  t.refusals[static_cast<std::size_t>(devices::Refusal::kInsufficientBalance)] = 3;
  t.error_codes["BUSY"] = 4;
  t.send_lag.record(12);
  t.unfinished_records = 5;
  t.elapsed_us = 2'000'000;
  t.workers = 2;
  t.busy_us = 123;
  auto back = from_proto(to_proto(t, names), names);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_EQ(back->ops.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(back->ops[i].c, t.ops[i].c) << i;
    EXPECT_EQ(back->ops[i].latency, t.ops[i].latency) << i;
  }
  EXPECT_EQ(back->refusals, t.refusals);
  EXPECT_EQ(back->error_codes, t.error_codes);
  EXPECT_EQ(back->send_lag, t.send_lag);
  EXPECT_EQ(back->unfinished_records, 5u);
  EXPECT_EQ(back->elapsed_us, 2'000'000);
  EXPECT_EQ(back->workers, 2u);
  // Another plan's op names are refused rather than mixed up.
  EXPECT_FALSE(
      from_proto(to_proto(t, names), {"swipe", "upload", "flush", "balance_query"}).is_ok());
}

TEST(LoadStats, HeadlineFiguresCountTheBackendsWork) {
  const std::vector<std::string> names{"swipe", "upload", "flush", "ping"};
  LoadTotals t;
  t.ops = {op_with(1000, {}), op_with(10, {2'000, 3'000}), op_with(2, {900'000}),
           op_with(100, {1'000})};
  t.ops[1].c.records_ok = 980;
  t.ops[2].c.records_ok = 10;
  t.ops[3].c.errors = 2;
  const json j = totals_json(t, names, 10.0);
  EXPECT_DOUBLE_EQ(j["offered_per_s"].get<double>(), 110);    // taps and pings, not uploads
  EXPECT_DOUBLE_EQ(j["achieved_per_s"].get<double>(), 99.1);  // records ingested + pings ok
  EXPECT_DOUBLE_EQ(j["records_per_s"].get<double>(), 99);     // uploads and the flush
  EXPECT_EQ(j["errors"].get<std::uint64_t>(), 2u);
  // Uploads and pings: not taps, and not the end-of-run flush.
  EXPECT_EQ(j["requests"].get<std::uint64_t>(), 3u);
  EXPECT_DOUBLE_EQ(j["max_ms"].get<double>(), 3.0);
  for (const char* key : {"late_sends", "p50_ms", "p99_ms", "p999_ms", "max_ms"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  // The distribution behind the report's histogram: 1 ms (ping) in [1, 2) ms, 2 and 3 ms
  // (uploads) in [2, 5) ms; the flush stays out.
  EXPECT_EQ(j["latency_distribution"],
            json::parse(R"([{"from_ms":1.0,"to_ms":2.0,"count":1},)"
                        R"({"from_ms":2.0,"to_ms":5.0,"count":2}])"));
  EXPECT_EQ(j["ops"]["flush"]["latency_distribution"],
            json::parse(R"([{"from_ms":500.0,"to_ms":1000.0,"count":1}])"));
}

// --- real runs over loopback tcp ---

LoadRunOptions quiet_run(const std::string& out) {
  LoadRunOptions o;
  o.out_dir = out;
  o.quiet = true;
  return o;
}

// Checks that hold for any complete run with the embedded backend: every sale was ingested
// exactly once and the books balance.
void expect_complete_run(const json& s) {
  EXPECT_EQ(s["exit_code"], kLoadExitOk) << s.dump(2);
  const auto& ops = s["ops"];
  const std::uint64_t sales = ops["swipe"]["ok"];
  EXPECT_GT(sales, 0u);
  EXPECT_EQ(ops["upload"]["records_ok"].get<std::uint64_t>() +
                ops["flush"]["records_ok"].get<std::uint64_t>(),
            sales);
  EXPECT_EQ(s["backend"]["records_accepted"].get<std::uint64_t>(), sales);
  EXPECT_EQ(s["backend"]["records_rejected"].get<std::uint64_t>(), 0u);
  EXPECT_TRUE(s["backend"]["ledger_balanced"].get<bool>());
  // The embedded backend is the server `citycard backend` runs: uploads that waited together
  // were committed together, and none of those commits failed.
  const auto& be = s["backend"];
  EXPECT_EQ(be["group_commit"].get<std::uint64_t>(), 64u);
  EXPECT_LE(
      be["grouped_uploads"].get<std::uint64_t>(),
      be["batches_accepted"].get<std::uint64_t>() + be["batches_duplicate"].get<std::uint64_t>());
  EXPECT_LE(2 * be["group_commits"].get<std::uint64_t>(),
            be["grouped_uploads"].get<std::uint64_t>());
  EXPECT_EQ(be["group_commit_failures"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(s["unfinished_requests"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(s["unfinished_records"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(s["errors"].get<std::uint64_t>(), 0u);
  // Every request op that was planned was sent and answered.
  for (const char* op : {"balance_query", "ping"}) {
    if (!ops.contains(op)) continue;
    EXPECT_EQ(ops[op]["ok"], ops[op]["planned"]) << op;
    EXPECT_EQ(ops[op]["latency"]["count"], ops[op]["planned"]) << op;
  }
  for (const char* key : {"offered_per_s", "achieved_per_s", "late_sends", "errors", "p50_ms",
                          "p99_ms", "p999_ms", "max_ms", "seed", "knobs", "windows"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
}

TEST(LoadRun, EmbeddedBackendRunIsCompleteAndTheSeedFixesTheArrivals) {
  const std::string dir = temp_dir("embedded");
  LoadOverrides o;
  o.duration_us = 1'500'000;
  o.seed = 5;
  auto plan = read_load_plan(small_scenario(dir), dir, o);
  ASSERT_TRUE(plan.is_ok()) << plan.status().to_string();
  std::vector<json> runs;
  for (int i = 0; i < 2; ++i) {
    const std::string out = dir + "/run" + std::to_string(i);
    ASSERT_EQ(run_load(*plan, quiet_run(out)), kLoadExitOk);
    runs.push_back(read_json(out + "/summary.json"));
    expect_complete_run(runs.back());
    const auto windows = read_lines(out + "/windows.jsonl");
    ASSERT_FALSE(windows.empty());
    std::uint64_t planned = 0;
    for (const auto& w : windows) planned += w["ops"]["swipe"]["planned"].get<std::uint64_t>();
    EXPECT_EQ(planned, runs.back()["ops"]["swipe"]["planned"].get<std::uint64_t>())
        << "the windows add up to the totals";
    EXPECT_EQ(runs.back()["seed"], 5);
    EXPECT_EQ(runs.back()["ignored_in_wall_time"], json::array({"faults"}));
    // `citycard report` renders a load run's folder too.
    ASSERT_TRUE(reports::render_run(out).is_ok());
    const auto html = reports::read_text_file(out + "/report.html");
    ASSERT_TRUE(html.is_ok());
    EXPECT_NE(html->find("Offered and achieved"), std::string::npos);
    EXPECT_NE(html->find("PASS"), std::string::npos);
  }
  // One seed drives the arrivals: the same plan, the same number of each kind.
  for (const char* op : {"swipe", "balance_query", "ping"}) {
    EXPECT_EQ(runs[0]["ops"][op]["planned"], runs[1]["ops"][op]["planned"]) << op;
  }
}

TEST(LoadRun, SeveralWorkerThreadsShareTheCity) {
  const std::string dir = temp_dir("threads");
  LoadOverrides o;
  o.duration_us = 1'000'000;
  o.threads = 3;
  auto plan = read_load_plan(small_scenario(dir), dir, o);
  ASSERT_TRUE(plan.is_ok()) << plan.status().to_string();
  ASSERT_EQ(run_load(*plan, quiet_run(dir + "/out")), kLoadExitOk);
  const json s = read_json(dir + "/out/summary.json");
  expect_complete_run(s);
  EXPECT_EQ(s["workers"], 3);
}

TEST(LoadRun, CoordinatorAndTwoAgentsOnLoopback) {
  const std::string dir = temp_dir("agents");
  LoadOverrides o;
  o.duration_us = 1'500'000;
  auto plan = read_load_plan(small_scenario(dir), dir, o);
  ASSERT_TRUE(plan.is_ok()) << plan.status().to_string();

  LoadRunOptions ro = quiet_run(dir + "/out");
  ro.agents = 2;
  ro.agents_wait_us = 60'000'000;  // bounds the test if an agent never comes
  std::promise<std::string> listening;
  ro.on_coordinator_listening = [&](const std::string& ep) { listening.set_value(ep); };
  std::future<int> coordinator =
      std::async(std::launch::async, [&] { return run_load(*plan, ro); });
  auto endpoint = listening.get_future();
  ASSERT_EQ(endpoint.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  const std::string ep = endpoint.get();
  auto agent = [&](const std::string& name) {
    AgentOptions a;
    a.coordinator = ep;
    a.name = name;
    a.quiet = true;
    a.wait_us = 60'000'000;
    return run_agent(a);
  };
  std::future<int> a1 = std::async(std::launch::async, agent, "a1");
  std::future<int> a2 = std::async(std::launch::async, agent, "a2");
  EXPECT_EQ(a1.get(), kLoadExitOk);
  EXPECT_EQ(a2.get(), kLoadExitOk);
  EXPECT_EQ(coordinator.get(), kLoadExitOk);

  const json s = read_json(dir + "/out/summary.json");
  expect_complete_run(s);
  ASSERT_EQ(s["agents"].size(), 2u);
  std::uint64_t offered = 0;
  std::set<std::string> names;
  for (const auto& a : s["agents"]) {
    names.insert(a["name"].get<std::string>());
    EXPECT_GT(a["offered"].get<std::uint64_t>(), 0u) << a.dump();
    offered += a["offered"].get<std::uint64_t>();
  }
  EXPECT_EQ(names, (std::set<std::string>{"a1", "a2"}));
  EXPECT_EQ(offered, s["offered"].get<std::uint64_t>()) << "the coordinator reports the sum";
  EXPECT_FALSE(s["windows"].empty());
}

TEST(LoadRun, ACityTooSmallToShareAbortsTheAgentsInsteadOfHanging) {
  const std::string dir = temp_dir("agents-abort");
  const std::string path = dir + "/tiny.lua";
  std::ofstream(path)
      << "describe { load = { rate_per_s = 100, duration_s = 1 } }\n"
         "city { cards = { count = 5 }, routes = { count = 1, buses_per_route = 1 } }\n"
         "phase { from = '07:00', to = '08:00', swipes_per_hour = 100 }\n";
  auto plan = read_load_plan(path, dir, {});
  ASSERT_TRUE(plan.is_ok()) << plan.status().to_string();
  LoadRunOptions ro = quiet_run(dir + "/out");
  ro.agents = 2;
  std::promise<std::string> listening;
  ro.on_coordinator_listening = [&](const std::string& ep) { listening.set_value(ep); };
  std::future<int> coordinator =
      std::async(std::launch::async, [&] { return run_load(*plan, ro); });
  auto endpoint = listening.get_future();
  ASSERT_EQ(endpoint.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  const std::string ep = endpoint.get();
  auto agent = [&](const std::string& name) {
    AgentOptions a;
    a.coordinator = ep;
    a.name = name;
    a.quiet = true;
    return run_agent(a);
  };
  std::future<int> a1 = std::async(std::launch::async, agent, "a1");
  std::future<int> a2 = std::async(std::launch::async, agent, "a2");
  // One bus cannot be split between two agents: the coordinator says so and aborts both.
  EXPECT_EQ(coordinator.get(), kLoadExitUsage);
  EXPECT_EQ(a1.get(), kLoadExitUsage);
  EXPECT_EQ(a2.get(), kLoadExitUsage);
}

// A backend that stalls for 300 ms on the first request and then answers at once. Requests
// planned during the stall are sent on time (open loop) and wait at the backend, so their
// latency from the planned time shows the stall; a closed-loop generator would have waited and
// recorded one slow request. Guaranteed by causality, not by timing: a request planned at t
// within the stall [s, s + 300 ms] cannot be answered before s + 300 ms.
class StallingPong : public sim::RequestHandler {
 public:
  Bytes handle(ByteView frame) override {
    auto req = protocol::wire::decode(frame);
    if (first_) {
      first_ = false;
      // The system under test being slow, not the test waiting for something.
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    citycard::wire::Envelope e;
    e.set_request_id(req ? req->request_id() : 0);
    e.mutable_pong()->set_nonce(req && req->has_ping() ? req->ping().nonce() : 0);
    return protocol::wire::encode(e);
  }

 private:
  bool first_ = true;
};

citycard::load::City fake_city() {
  citycard::load::City c;
  auto* card = c.add_cards();
  card->set_family(1);
  card->set_serial(std::string(8, '\1'));
  card->set_dpk(std::string(16, '\2'));
  card->set_dlk(std::string(16, '\3'));
  card->set_dtk(std::string(16, '\4'));
  card->set_valid_from(std::string(4, '\0'));
  card->set_valid_to(std::string(4, '\0'));
  card->set_issuer_data(std::string(8, '\0'));
  auto* t = c.add_terminals();
  t->set_terminal_id(std::string(6, '\5'));
  t->set_purchase_master(std::string(16, '\6'));
  t->set_batch_key(std::string(16, '\7'));
  t->set_next_sequence(1);
  t->set_operator_id("op");
  t->set_fare_fen(200);
  return c;
}

TEST(LoadRun, LatencyIsMeasuredFromThePlannedSendTime) {
  zmq::context_t ctx;
  StallingPong handler;
  sim::ZmqServer server(ctx, handler);
  ASSERT_TRUE(server.bind("tcp://127.0.0.1:*").is_ok());
  std::thread serving([&] { server.serve(); });

  LoadKnobs k;
  k.mix = {{"ping", 1.0}};
  k.arrivals = sim::ArrivalProcess::kConstant;
  k.duration_us = 1'000'000;
  LoadPlan plan;
  plan.knobs = k;
  auto curve = sim::RateCurve::flat(1'000'000, 1000);
  ASSERT_TRUE(curve.is_ok());
  sim::WallClock clock;
  LocalLoad local(k, plan.op_names(), fake_city(), server.endpoint(), "stall", 1, clock);
  ASSERT_TRUE(local.prepare().is_ok());
  std::atomic<bool> stop{false};
  LoadTotals t = local.run(
      *curve, clock.now_us(), 0, [](const WindowStats&) {}, stop);
  server.stop();
  serving.join();

  const OpStats& ping = t.ops[kFirstRequestIndex];
  ASSERT_EQ(ping.c.planned, 1000u);
  EXPECT_EQ(ping.c.ok, 1000u);
  ASSERT_EQ(ping.latency.count(), 1000u);
  // The requests planned in the first half of the stall (about 150 of 1000) waited at least
  // 150 ms each: the 85th percentile cannot be below that.
  EXPECT_GE(ping.latency.percentile_us(85), 150'000) << "p50 " << ping.latency.percentile_us(50);
  EXPECT_GE(ping.latency.max_us(), 300'000);
}

TEST(LoadRun, ProvisionedCityAgainstABackendProcessThatRestarts) {
  const std::string dir = temp_dir("external");
  const std::string data = dir + "/backend-data";
  const std::string scenario = small_scenario(dir);
  {
    testing::Child provision({kBinary, "load", scenario, "--provision", data, "--key-seed", "7"});
    ASSERT_EQ(provision.wait_exit(60'000), 0) << provision.output();
  }
  const std::string city_file = data + "/load-city.pb";
  auto city = read_city_file(city_file);
  ASSERT_TRUE(city.is_ok()) << city.status().to_string();
  ASSERT_EQ(city->cards_size(), 300);

  std::string endpoint;
  {
    testing::Child backend(
        {kBinary, "backend", "--listen", "tcp://127.0.0.1:*", "--data", data, "--key-seed", "7"});
    auto line = backend.wait_for("listening on", 30'000);
    ASSERT_TRUE(line) << backend.output();
    endpoint = testing::endpoint_in(*line);
    testing::Child load({kBinary, "load", scenario, "--backend", endpoint, "--city", city_file,
                         "--duration", "1s", "--out", dir + "/out"});
    ASSERT_EQ(load.wait_exit(120'000), 0) << load.output();
    EXPECT_NE(load.output().find("offered"), std::string::npos) << load.output();
    backend.signal(SIGTERM);
    ASSERT_EQ(backend.wait_exit(30'000), 0) << backend.output();
  }
  const json s = read_json(dir + "/out/summary.json");
  EXPECT_EQ(s["unfinished_records"], 0u);
  EXPECT_EQ(s["errors"], 0u);
  const std::uint64_t sales = s["ops"]["swipe"]["ok"];
  EXPECT_EQ(s["ops"]["upload"]["records_ok"].get<std::uint64_t>() +
                s["ops"]["flush"]["records_ok"].get<std::uint64_t>(),
            sales)
      << "TACs verified";

  // Started again from the same folder, the backend still knows the provisioned cards.
  testing::Child again(
      {kBinary, "backend", "--listen", "tcp://127.0.0.1:*", "--data", data, "--key-seed", "7"});
  auto line = again.wait_for("listening on", 30'000);
  ASSERT_TRUE(line) << again.output();
  zmq::context_t ctx;
  sim::ZmqClient client(ctx, testing::endpoint_in(*line));
  citycard::wire::Envelope q;
  q.set_request_id(1);
  q.mutable_balance_query()->set_card_serial(city->cards(0).serial());
  auto reply = client.call(protocol::wire::encode(q), 5000);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  auto env = protocol::wire::decode(*reply);
  ASSERT_TRUE(env.is_ok());
  EXPECT_TRUE(env->has_balance_reply()) << env->DebugString();
  again.signal(SIGTERM);
  EXPECT_EQ(again.wait_exit(30'000), 0);
}

TEST(LoadCommand, CoordinatorAndTwoAgentProcesses) {
  const std::string dir = temp_dir("agent-processes");
  const std::string scenario = small_scenario(dir);
  testing::Child coordinator({kBinary, "load", scenario, "--agents", "2", "--coordinator-listen",
                              "tcp://127.0.0.1:*", "--duration", "1s", "--out", dir + "/out",
                              "--agents-wait", "60s"});
  auto line = coordinator.wait_for("coordinator listening on", 60'000);
  ASSERT_TRUE(line) << coordinator.output();
  const std::string ep = testing::endpoint_in(*line);
  testing::Child a1({kBinary, "agent", "--coordinator", ep, "--name", "p1"});
  testing::Child a2({kBinary, "agent", "--coordinator", ep, "--name", "p2", "--threads", "2"});
  EXPECT_EQ(a1.wait_exit(120'000), 0) << a1.output();
  EXPECT_EQ(a2.wait_exit(120'000), 0) << a2.output();
  ASSERT_EQ(coordinator.wait_exit(120'000), 0) << coordinator.output();
  const json s = read_json(dir + "/out/summary.json");
  expect_complete_run(s);
  EXPECT_EQ(s["workers"], 3) << "one thread in p1, two in p2";
}

}  // namespace
}  // namespace citycard::scenarios
