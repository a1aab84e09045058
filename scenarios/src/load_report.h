// What a load run shows and writes: the live progress line (rewritten in place on a terminal,
// one plain line per window otherwise), windows.jsonl, summary.json, and the final report.
//
// Threads: one thread (the one running the load's collecting loop).
#pragma once

#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "citycard/scenarios/load.h"
#include "load_stats.h"

namespace citycard::scenarios {

class RunReport {
 public:
  RunReport(const LoadPlan& plan, std::string out_dir, bool quiet);
  ~RunReport();

  Status open();  // creates out_dir and windows.jsonl
  bool quiet() const { return quiet_; }

  // A line for the user (nothing when quiet); ends a progress line first.
  void say(const std::string& line);
  // One completed window: a line of windows.jsonl and the progress display. `step` tags
  // windows of a sweep.
  void window(const WindowStats& w, std::optional<std::size_t> step = std::nullopt);
  const std::vector<nlohmann::json>& windows() const { return windows_; }
  void clear_windows() { windows_.clear(); }

  // The human report of a run's totals.
  void report(const nlohmann::json& summary);
  Status write_summary(const nlohmann::json& summary);

  const std::string& out_dir() const { return out_dir_; }

 private:
  void end_progress_line();

  const LoadPlan& plan_;
  std::vector<std::string> op_names_;
  std::string out_dir_;
  bool quiet_;
  bool tty_;
  bool progress_open_ = false;
  std::ofstream windows_file_;
  std::vector<nlohmann::json> windows_;
};

}  // namespace citycard::scenarios
