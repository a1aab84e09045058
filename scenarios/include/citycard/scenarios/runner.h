// Running scenarios: one file, or every scenario in a folder, each in a fresh sandbox and a
// fresh simulated city, with its reports written to the run folder.
#pragma once

#include <cstdint>
#include <optional>
#include <filesystem>
#include <string>
#include <vector>

#include "citycard/reports/run_summary.h"
#include "citycard/scenarios/lua_sandbox.h"

namespace citycard::scenarios {

struct RunOptions {
  std::string scenario_path;
  std::optional<std::uint64_t> seed;  // overrides describe{seed=}; default 1
  std::string out_dir;                // run folder; created
  std::string lib_root;               // where require "lib.x" looks (scenarios/)
  std::vector<std::string> tags;      // for folders: run only scenarios with one of these tags
  std::vector<std::string> defects;   // injected defects (World's known_defects())
  SandboxLimits limits;
  bool keep_backend_db = true;        // backend.db stays in the run folder
};

// Exit codes of `citycard run`.
inline constexpr int kExitPass = 0;
inline constexpr int kExitFail = 1;        // an expectation failed
inline constexpr int kExitUsageOrScript = 2;

struct RunOutcome {
  reports::RunSummary summary;
  int exit_code = kExitUsageOrScript;
  bool skipped = false;  // filtered out by tags
};

// Runs one scenario file into options.out_dir: trace.jsonl, summary.json, junit.xml,
// report.html.
RunOutcome run_scenario(const RunOptions& options);

// Runs every *.lua directly in `folder` (sorted by name) into out_dir/<name>/, then writes
// out_dir/junit.xml with a test suite per scenario. Exit code: the worst of the runs.
int run_folder(const RunOptions& options, std::vector<RunOutcome>& outcomes);

// The scenario library root for a scenario file or folder: the nearest folder at or above it
// that holds lib/ (for scenarios/x.lua, scenarios/); else the scenario's own folder.
std::string lib_root_for(const std::filesystem::path& scenario);

// A fresh run folder name for a command: runs/<prefix><UTC yyyymmdd-hhmmss>.
std::string default_run_dir(const std::string& prefix = "");

}  // namespace citycard::scenarios
