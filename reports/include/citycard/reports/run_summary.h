// A run's summary: what summary.json holds, what the human summary prints, and what JUnit XML
// and the HTML report start from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "citycard/protocol/status.h"
#include "citycard/reports/trace.h"

namespace citycard::reports {

struct Expectation {
  std::string name;
  bool passed = false;
  std::string message;   // why it failed (empty when it passed)
  std::string where;     // "scenarios/smoke.lua:42"
  std::int64_t t_us = 0; // virtual time it was checked
};

struct RunSummary {
  std::string scenario;          // name from describe{}
  std::string scenario_path;
  std::string description;
  std::vector<std::string> tags;
  std::uint64_t seed = 0;
  Json knobs = Json::object();   // every fault knob and option, with its value
  std::uint64_t swipes = 0;      // purchases completed on cards
  std::uint64_t refusals = 0;
  double swipes_per_s_wall = 0;
  double virtual_duration_s = 0;
  double wall_duration_s = 0;
  std::vector<Expectation> expectations;
  bool ledger_balanced = false;
  std::string trace_digest;
  std::string replay_command;    // the command line that replays this run
  std::string error;             // a script error that ended the run early, if any
  Json figures = Json::object(); // further figures: ledger totals, backend counters...

  std::size_t passed() const;
  std::size_t failed() const;
  // Verdict: no script error and every expectation held (and at least one was checked).
  bool ok() const;
};

Json to_json(const RunSummary& s);
Result<RunSummary> summary_from_json(const Json& j);

Status write_text_file(const std::string& path, const std::string& text);
Result<std::string> read_text_file(const std::string& path);

// The short human summary, ending with the line "trace digest: <hex>".
std::string human_summary(const RunSummary& s);

}  // namespace citycard::reports
