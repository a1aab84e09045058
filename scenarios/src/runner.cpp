#include "citycard/scenarios/runner.h"

#include <algorithm>
#include <ctime>
#include <filesystem>

#include "citycard/reports/report.h"
#include "citycard/sim/clock.h"
#include "lua_api.h"
#include "operator_trace.h"

namespace citycard::scenarios {

namespace fs = std::filesystem;

namespace {
constexpr std::uint64_t kDefaultSeed = 1;
// Virtual calendar origin for os.time() before city{} sets one: 2026-01-01 00:00 UTC.
constexpr std::int64_t kDefaultCalendarUnixS = 1'767'225'600;
constexpr std::int64_t kUnixAtEpoch2000 = 946'684'800;

std::string replay_command(const RunOptions& o, std::uint64_t seed) {
  std::string cmd = "citycard run " + o.scenario_path + " --seed " + std::to_string(seed);
  for (const auto& d : o.defects) cmd += " --defect " + d;
  return cmd;
}
}  // namespace

RunOutcome run_scenario(const RunOptions& options) {
  RunOutcome out;
  reports::RunSummary& summary = out.summary;
  summary.scenario = fs::path(options.scenario_path).stem().string();
  summary.scenario_path = options.scenario_path;
  summary.seed = options.seed.value_or(kDefaultSeed);
  summary.replay_command = replay_command(options, summary.seed);
  summary.knobs["sandbox.instructions_max"] = options.limits.instructions_max;
  summary.knobs["sandbox.wall_ms_max"] = options.limits.wall_ms_max;
  summary.knobs["sandbox.memory_bytes_max"] = options.limits.memory_bytes_max;

  std::error_code ec;
  fs::create_directories(options.out_dir, ec);
  if (ec) {
    summary.error = "cannot create run folder " + options.out_dir + ": " + ec.message();
    return out;
  }
  auto trace = reports::TraceWriter::open(options.out_dir + "/trace.jsonl");
  if (!trace) {
    summary.error = trace.status().to_string();
    return out;
  }
  const std::string db_path = options.out_dir + "/backend.db";
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db_path + suffix, ec);

  const sim::WallClock wall;
  (*trace)->event(0, "run_start",
                  {{"scenario", summary.scenario}, {"seed", summary.seed}});
  {
    World world(summary.seed, **trace, db_path);
    if (Status d = world.set_defects(options.defects); !d) {
      summary.error = d.message();
      return out;
    }
    if (!options.defects.empty()) summary.knobs["defects"] = options.defects;
    ScenarioContext context{summary, **trace, world, 0, options.tags};
    LuaSandbox sandbox(options.limits, options.lib_root, world.loop(), kDefaultCalendarUnixS,
                       sim::Rng(summary.seed).fork("lua"));
    install_api(sandbox, context);
    sandbox.lock_globals();
    Status s = sandbox.run_file(options.scenario_path);
    if (context.skipped) {
      out.skipped = true;
      out.exit_code = kExitPass;
      return out;
    }
    if (!s) summary.error = s.message();
    // Time-bounded expectations the run ended before deciding are failures, not passes.
    for (const auto& p : context.pending) {
      record_expectation(context, {p.name, false,
                                   "the run ended before it was decided (limit at " +
                                       std::to_string(p.deadline_us / 1'000'000) + " s virtual)",
                                   p.where, world.loop().now_us()});
    }
    context.pending.clear();

    const WorldStats st = world.stats();
    summary.swipes = st.swipes;
    summary.refusals = st.refusals;
    summary.virtual_duration_s = static_cast<double>(world.loop().now_us()) / 1e6;
    if (world.built() && world.backend_up()) {
      // The backend's clearing goes into the trace, so reports render it (and reconcile it
      // against the validators' swipes) from the trace alone.
      if (auto routes = world.backend().clearing().by_route(); routes) {
        for (const auto& r : *routes) {
          (*trace)->event(world.loop().now_us(), "clearing",
                          {{"operator", r.operator_id}, {"route", r.route}, {"count", r.count},
                           {"amount_fen", r.amount_fen}});
        }
      }
      trace_operator_reports(world.backend(), **trace, world.loop().now_us());
    }
    if (world.built()) {
      // Money is checked after every run, whatever the scenario asserted.
      const Status conserved = world.conservation();
      summary.ledger_balanced = conserved.is_ok();
      record_expectation(context, {"ledger conserves money (automatic)", conserved.is_ok(),
                                   conserved.is_ok() ? "" : conserved.message(), "citycard",
                                   world.loop().now_us()});
      summary.figures["validator_amount_fen"] = st.validator_amount_fen;
      summary.figures["backend_amount_fen"] = st.backend_amount_fen;
      summary.figures["records_uploaded"] = st.uploaded_records;
      summary.figures["records_still_queued"] = st.queued_records;
      summary.figures["network_messages"] = st.network_messages;
      summary.figures["network_lost"] = st.network_lost;
      summary.figures["events_processed"] = world.loop().events_processed();
      summary.figures["calendar_start_unix_s"] =
          world.config().start_epoch2000_s + kUnixAtEpoch2000;
    } else {
      summary.ledger_balanced = true;  // no city, no money
    }
    (*trace)->event(world.loop().now_us(), "run_end",
                    {{"swipes", st.swipes}, {"refusals", st.refusals},
                     {"error", summary.error}});
  }
  summary.wall_duration_s = static_cast<double>(wall.now_us()) / 1e6;
  summary.swipes_per_s_wall =
      summary.wall_duration_s > 0 ? static_cast<double>(summary.swipes) / summary.wall_duration_s
                                  : 0;
  summary.figures["virtual_s_per_wall_s"] =
      summary.wall_duration_s > 0 ? summary.virtual_duration_s / summary.wall_duration_s : 0;
  summary.trace_digest = (*trace)->digest_hex();
  if (Status s = (*trace)->close(); !s && summary.error.empty()) summary.error = s.to_string();
  if (!options.keep_backend_db) {
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db_path + suffix, ec);
  }

  if (summary.expectations.empty() && summary.error.empty()) {
    summary.error = "the scenario checked no expectation";
  }
  Status w = reports::write_text_file(options.out_dir + "/summary.json",
                                      reports::to_json(summary).dump(2) + "\n");
  if (w) w = reports::render_run(options.out_dir);
  if (!w && summary.error.empty()) summary.error = "writing reports: " + w.to_string();

  if (!summary.error.empty()) {
    out.exit_code = kExitUsageOrScript;
  } else {
    out.exit_code = summary.ok() ? kExitPass : kExitFail;
  }
  return out;
}

int run_folder(const RunOptions& options, std::vector<RunOutcome>& outcomes) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(options.scenario_path)) {
    if (entry.is_regular_file() && entry.path().extension() == ".lua") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  int worst = kExitPass;
  std::vector<reports::RunSummary> ran;
  for (const auto& f : files) {
    RunOptions one = options;
    one.scenario_path = f.string();
    one.out_dir = (fs::path(options.out_dir) / f.stem()).string();
    RunOutcome o = run_scenario(one);
    if (!o.skipped) {
      worst = std::max(worst, o.exit_code);
      ran.push_back(o.summary);
    }
    outcomes.push_back(std::move(o));
  }
  Status w = reports::write_text_file(options.out_dir + "/junit.xml",
                                      reports::junit_xml(ran, "citycard"));
  if (!w) return kExitUsageOrScript;
  return worst;
}

std::string lib_root_for(const fs::path& scenario) {
  const fs::path dir = fs::is_directory(scenario) ? scenario : scenario.parent_path();
  for (fs::path p = dir; !p.empty(); p = p.parent_path()) {
    if (fs::is_directory(p / "lib")) return p.string();
    if (p == p.parent_path()) break;
  }
  return dir.empty() ? "." : dir.string();
}

std::string default_run_dir(const std::string& prefix) {
  char buf[64];
  const std::time_t t = static_cast<std::time_t>(sim::unix_time_s());
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return "runs/" + prefix + buf;
}

}  // namespace citycard::scenarios
