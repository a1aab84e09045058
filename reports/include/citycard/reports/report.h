// Rendering a run's reports from its folder: trace.jsonl (the source of truth) and
// summary.json in, report.html and junit.xml out. `citycard run` calls this at the end of a
// run and `citycard report RUN_DIR` calls it again later; both give the same files.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "citycard/protocol/status.h"
#include "citycard/reports/run_summary.h"
#include "citycard/reports/trace.h"

namespace citycard::reports {

// Figures aggregated from a trace, one pass over its lines.
struct TraceStats {
  struct Bucket {
    std::uint64_t swipes = 0;
    std::uint64_t refusals = 0;
    std::int64_t amount_fen = 0;
  };
  struct Group {
    std::uint64_t swipes = 0;
    std::int64_t amount_fen = 0;
  };
  std::map<std::int64_t, Bucket> per_minute;        // virtual minute -> figures
  std::map<std::string, Group, std::less<>> per_route;
  std::map<std::string, Group, std::less<>> per_vehicle;
  std::map<std::string, std::uint64_t, std::less<>> refusal_reasons;
  // The backend's clearing by route, as the run recorded it at its end ("clearing" events).
  struct Cleared {
    std::string operator_id, route;
    std::int64_t count = 0, amount_fen = 0;
  };
  std::vector<Cleared> cleared;
  // Tears and recoveries, in order (at most kTearLogMax kept; tear_events counts them all).
  struct TearEntry {
    std::int64_t t_us = 0;
    std::string card, vehicle, what;
  };
  static constexpr std::size_t kTearLogMax = 1000;
  std::vector<TearEntry> tear_log;
  std::uint64_t tear_events = 0;
  // The backend's operator reports and settlement batches the run wrote at its end (op_*,
  // settlement_batch and operator_reports_skipped events), whole, in trace order.
  std::vector<Json> operator_events;
  std::uint64_t batches = 0, records_accepted = 0, records_duplicate = 0, records_rejected = 0;
  std::uint64_t lines = 0;
  std::int64_t last_t_us = 0;
};

// Reads the trace in chunks of whole lines (chunk_bytes is a knob for tests).
Result<TraceStats> aggregate_trace(const std::string& trace_path,
                                   std::size_t chunk_bytes = 32u << 20);

std::string junit_xml(const std::vector<RunSummary>& runs, const std::string& suite_name);
std::string html_report(const RunSummary& summary, const TraceStats& stats);

// The backend's clearing per route as CSV: operator,route,swipes,amount_fen,amount_yuan.
std::string clearing_csv(const TraceStats& stats);

// The stylesheet every HTML report inlines.
const char* report_css();

// Reads RUN_DIR/summary.json and RUN_DIR/trace.jsonl; writes RUN_DIR/report.html,
// RUN_DIR/junit.xml and RUN_DIR/clearing.csv. A `citycard load` run's folder (summary.json
// with "tool": "citycard load", no trace) goes to render_load_run() (wall_report.h).
Status render_run(const std::string& run_dir);

// What changed from run A to run B: verdicts expectation by expectation, headline figures,
// per-route totals and whether the traces are identical. For comparing two builds.
struct RunDiff {
  std::string text;           // the human table
  std::size_t regressions = 0;  // expectations that passed in A and fail (or vanished) in B
  std::size_t fixes = 0;        // failed in A, pass in B
  bool same_trace = false;
};
Result<RunDiff> diff_runs(const std::string& run_a, const std::string& run_b);

}  // namespace citycard::reports
