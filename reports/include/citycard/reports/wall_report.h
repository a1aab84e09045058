// The reports of a wall-time load run (`citycard load`): its folder holds summary.json (with
// "tool": "citycard load", per-window figures under "windows", per-op figures under "ops", the
// latency distribution, and a sweep's steps under "sweep") and windows.jsonl; no trace.
// render_run() (report.h) sends such a folder here, so `citycard report RUN_DIR` works for
// both kinds of run.
#pragma once

#include <string>
#include <vector>

#include "citycard/protocol/status.h"
#include "citycard/reports/trace.h"

namespace citycard::reports {

// True when summary.json was written by `citycard load`.
bool is_load_summary(const Json& summary);

// The checks `citycard load` decides its exit status by, one per JUnit test case: nothing
// errored, nothing refused, nothing left unfinished, the ledger balanced (a sweep: only the
// ledger, since it is meant to find saturation).
struct LoadCheck {
  std::string name;
  bool passed = false;
  std::string message;  // why it failed
};
std::vector<LoadCheck> load_checks(const Json& summary);

// One self-contained HTML page: verdict and failed checks first, seed and knobs, offered vs
// achieved rate and p50/p99/p99.9 over time, the latency distribution, the per-operation
// table, the saturation curve of a sweep, backend and host figures.
std::string load_html_report(const Json& summary);
std::string load_junit_xml(const Json& summary);
// op,planned,sent,ok,errors,timeouts,refused,late,offered_per_s,achieved_per_s,p50_ms,p90_ms,
// p99_ms,p999_ms,max_ms
std::string load_ops_csv(const Json& summary);
// step,rate_per_s,offered_per_s,achieved_per_s,p50_ms,p99_ms,p999_ms,max_ms,errors,refused,
// saturated
std::string load_sweep_csv(const Json& summary);

// What changed between two load runs: the exit checks (a check that held in A and fails in B
// is a regression), headline figures and per-op p99. Used by diff_runs() for load folders.
struct LoadDiff {
  std::string text;
  std::size_t regressions = 0, fixes = 0;
};
LoadDiff diff_load_runs(const std::string& name_a, const Json& a, const std::string& name_b,
                        const Json& b);

// Writes RUN_DIR/report.html, junit.xml, ops.csv and (a sweep) sweep.csv.
Status render_load_run(const std::string& run_dir, const Json& summary);

}  // namespace citycard::reports
