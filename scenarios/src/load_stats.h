// What a load run counts and measures, per operation, per window and in total; how parts
// (workers, agents) are merged; how they travel between agent and coordinator; and the
// figures summary.json and the progress line are made of.
//
// Counting rules (the README's "Load in wall time" says the same to users):
// - planned: arrivals the pacer planned (for "upload": batches that became due);
// - sent: requests put on the wire (uploads: every attempt, re-sends included; swipes: taps);
// - ok / errors / timeouts: how the requests ended (swipes: sales / refusals by the card);
// - refused: never sent because a bound was hit (worker in-flight limit, socket send queue,
//   a bus's full upload queue); never silently dropped;
// - late: arrivals (swipes, request ops) sent more than late_us after their planned time: the
//   generator falling behind its schedule. Uploads are not planned by the pacer and are never
//   late; a due batch waiting for the bus's previous one is charged to its latency;
// - "flush": the uploads after the schedule's end, counted apart from "upload" and left out of
//   the headline percentiles (every bus sending what it holds at once is how a run ends, not
//   the load it offered); their records count as ingested;
// - latency: from the planned time to the outcome, for every request that ended (timeouts
//   included, at the time they were given up); uploads from the time the batch became due to
//   its acknowledgement, across re-sends. Swipes: planned tap to sale done (time at the gate).
// Windows are by the wall time at which things happened, relative to the run's start.
//
// Threads: plain values; WindowMerger is used by one thread.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "citycard/devices/purchase.h"
#include "citycard/protocol/status.h"
#include "citycard/sim/histogram.h"
#include "load.pb.h"

namespace citycard::scenarios {

struct OpCounters {
  std::uint64_t planned = 0;
  std::uint64_t sent = 0;
  std::uint64_t ok = 0;
  std::uint64_t errors = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t refused = 0;
  std::uint64_t late = 0;
  std::uint64_t records_ok = 0;         // uploads: records the backend accepted
  std::uint64_t records_duplicate = 0;  // uploads: records it had already
  std::uint64_t records_bad = 0;        // uploads: records it rejected

  void add(const OpCounters& o);
  bool operator==(const OpCounters&) const = default;
};

struct OpStats {
  OpCounters c;
  sim::LatencyHistogram latency;
  void merge(const OpStats& o);
};

// One window of one part (or of several merged): ops indexed like LoadPlan::op_names().
struct WindowStats {
  std::uint32_t index = 0;
  std::vector<OpStats> ops;
};

struct LoadTotals {
  std::vector<OpStats> ops;  // indexed like LoadPlan::op_names()
  std::array<std::uint64_t, devices::kRefusalCount> refusals{};  // taps, by reason
  std::map<std::string, std::uint64_t> error_codes;              // "BUSY", "timeout", ...
  sim::LatencyHistogram send_lag;         // actual minus planned send time of every arrival
  std::uint64_t unfinished_requests = 0;  // still outstanding when the drain ended
  std::uint64_t unfinished_records = 0;   // still on the buses when the drain ended
  std::uint64_t stale_replies = 0;
  std::int64_t elapsed_us = 0;   // start to the last outcome (longest part)
  std::int64_t schedule_us = 0;  // the schedule's length: shorter if stopped early
  std::uint32_t workers = 0;
  std::uint64_t busy_us = 0;  // summed over workers: time not spent waiting

  void merge(const LoadTotals& o);
};

std::vector<OpStats> empty_ops(std::size_t n);

// Conversions for the agent protocol; names are checked against `op_names`.
citycard::load::OpStats to_proto(const std::string& name, const OpStats& s);
citycard::load::Window to_proto(const WindowStats& w, const std::vector<std::string>& op_names);
citycard::load::Totals to_proto(const LoadTotals& t, const std::vector<std::string>& op_names);
Result<WindowStats> from_proto(const citycard::load::Window& w,
                               const std::vector<std::string>& op_names);
Result<LoadTotals> from_proto(const citycard::load::Totals& t,
                              const std::vector<std::string>& op_names);

// Merges windows from `sources` parts that each deliver windows 0, 1, 2... in order, and
// releases window i once every part has delivered it or finished.
class WindowMerger {
 public:
  // Windows held open waiting for a slower part, at most (each holds a histogram per op): a
  // part this far behind the others is stuck, and the run is better ended than kept in memory.
  static constexpr std::size_t kOpenWindowsMax = 256;

  WindowMerger(std::size_t sources, std::size_t ops)
      : next_(sources, 0), done_(sources, false), ops_(ops) {}
  // kMalformed when the window is out of order or its part has finished (an agent's message
  // is input, not our invariant), kTooLarge past kOpenWindowsMax; nothing is merged then.
  Status add(std::size_t source, WindowStats w);
  void finish(std::size_t source);
  // Windows now complete, in order.
  std::vector<WindowStats> take_complete();
  bool all_finished() const;

 private:
  std::vector<std::uint32_t> next_;  // per source: windows delivered
  std::vector<bool> done_;
  std::size_t ops_;
  std::map<std::uint32_t, WindowStats> open_;
  std::uint32_t released_ = 0;
};

// Figures.
double ms(std::int64_t us);
nlohmann::json latency_json(const sim::LatencyHistogram& h);  // p50_ms .. max_ms, count
// The distribution for the report's histogram chart: bins with 1-2-5 edges per decade,
// [{"from_ms", "to_ms", "count"}...] from the first non-empty bin to the last (a value lands by
// its histogram slot's lowest value, so edges hold to the histogram's 0.1%).
nlohmann::json latency_distribution_json(const sim::LatencyHistogram& h);
// One window's line of windows.jsonl (and of the progress display).
nlohmann::json window_json(const WindowStats& w, const std::vector<std::string>& op_names,
                           std::int64_t window_us);
// Every request (uploads and request ops): the histogram behind the headline percentiles.
sim::LatencyHistogram request_latency(const std::vector<OpStats>& ops);
// The headline and per-op figures of a whole run (summary.json's body, without plan knobs).
// `duration_s` is the planned schedule's; a run stopped early uses the part that ran.
nlohmann::json totals_json(const LoadTotals& t, const std::vector<std::string>& op_names,
                           double duration_s);

}  // namespace citycard::scenarios
