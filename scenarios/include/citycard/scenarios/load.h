// `citycard load` and `citycard agent`: a scenario's rush hour replayed in wall time against a
// backend over real ZeroMQ tcp, open-loop, with latency histograms, from one process or from
// several (a coordinator and its agents). Usage and output are documented in
// scenarios/README.md, "Load in wall time".
//
// How a run works:
// - The scenario is read in load mode (read_load_plan): city{} gives the cards and buses,
//   phase{} the peak curve up to run_until, describe{ load = {...} } the workload mix and
//   knobs; the command line overrides any of them. Nothing after run_until runs: expectations
//   belong to virtual-time runs.
// - The city is issued by the backend: by an embedded backend this process serves on
//   tcp://127.0.0.1:* (default), or, for an external `citycard backend`, ahead of time with
//   provision_city() into the backend's data folder, which saves the cards and PSAMs to a
//   city file that `load --backend ... --city FILE` reads. A provisioned city serves one run:
//   cards and PSAMs start from their issued state, and reusing them would replay counters.
// - Workers (threads) each own a disjoint share of the cards and buses and one DEALER socket
//   carrying all their terminals' requests. Arrivals are planned by a sim::Pacer from the
//   seed; every latency is measured from the planned time.
//
// Threads: run_load() and run_agent() block the calling thread and start their own workers.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "citycard/protocol/status.h"
#include "citycard/scenarios/world.h"
#include "citycard/sim/pacer.h"

namespace citycard::scenarios {

// Every knob that shapes a run. Precedence: these defaults < the scenario's
// describe{ load = {...} } < the command line.
struct LoadKnobs {
  std::uint64_t seed = 1;
  std::int64_t duration_us = 20'000'000;
  // Peak arrivals per second over the whole run (all agents, all threads). 0: the scenario's
  // own phase rates with its timeline compressed into duration_us (same number of arrivals).
  double rate_per_s = 0;
  bool flat = false;  // rate_per_s for the whole duration instead of the scenario's curve
  sim::ArrivalProcess arrivals = sim::ArrivalProcess::kPoisson;
  // Arrival kinds and weights: "swipe" (a tap on a bus; its record is uploaded in batches)
  // and the request/response operations of load_ops.h ("balance_query", "ping").
  std::vector<std::pair<std::string, double>> mix = {{"swipe", 1.0}};
  std::int64_t threads = 1;                     // workers in this process (or agent)
  std::int64_t batch_size = 100;                // records per upload batch
  std::int64_t upload_interval_us = 1'000'000;  // a record waits at most this before upload
  // Each bus uploads on its own timer, every upload_interval_us from a random phase (as real
  // validators, and the World's buses, do), so a fleet's uploads spread over the interval.
  // true: every bus's timer starts from its first tap, so a fleet started together uploads
  // in phase, in waves (what the generator did before; kept to compare).
  bool aligned_uploads = false;
  std::int64_t timeout_us = 5'000'000;          // per request
  std::int64_t window_us = 1'000'000;           // reporting window
  std::int64_t late_us = 1'000;                 // a send later than this after its plan is late
  std::int64_t in_flight_max = 10'000;          // outstanding requests per worker
  std::int64_t queue_records_max = 10'000;      // records a bus holds before refusing taps
  std::int64_t retry_us = 100'000;              // a failed upload is re-sent after this
  std::int64_t drain_us = 10'000'000;           // after the schedule, wait this for the rest

  Status validate() const;
  nlohmann::json to_json() const;
};

// Command-line values; each one set overrides the scenario's.
struct LoadOverrides {
  std::optional<std::uint64_t> seed;
  std::optional<std::int64_t> duration_us;
  std::optional<double> rate_per_s;
  std::optional<bool> flat;
  std::optional<sim::ArrivalProcess> arrivals;
  std::optional<std::vector<std::pair<std::string, double>>> mix;
  std::optional<std::int64_t> threads;
  std::optional<std::int64_t> batch_size;
  std::optional<std::int64_t> upload_interval_us;
  std::optional<bool> aligned_uploads;
  std::optional<std::int64_t> timeout_us;
  std::optional<std::int64_t> window_us;
  std::optional<std::int64_t> late_us;
  std::optional<std::int64_t> in_flight_max;
  std::optional<std::int64_t> cards;  // overrides city{ cards = { count } }
  // Overrides the number of buses (over the scenario's routes when they divide it evenly,
  // else one bus per route): fewer buses upload fewer, bigger batches at the same swipe rate.
  std::optional<std::int64_t> buses;
};

struct LoadPlan {
  std::string scenario;  // describe{ name }, else the file's stem
  std::string scenario_path;
  CityConfig city;
  sim::RateCurve curve;  // arrivals per second over the run's wall time, whole run
  LoadKnobs knobs;
  // Virtual-time-only calls the scenario made (faults, outage, riders...), not replayed.
  std::vector<std::string> ignored;

  // Op names in the order stats are kept: "swipe", "upload", "flush" (the uploads after the
  // schedule's end), then the mix's request ops.
  std::vector<std::string> op_names() const;
  nlohmann::json to_json() const;  // knobs, city, curve: for summary.json
};

// Reads a scenario in load mode (see above). `lib_root` is where require "lib.x" looks.
Result<LoadPlan> read_load_plan(const std::string& scenario_path, const std::string& lib_root,
                                const LoadOverrides& overrides);
// "swipe=0.9,balance_query=0.1" -> pairs; kInvalidArgument on a malformed entry.
Result<std::vector<std::pair<std::string, double>>> parse_mix(const std::string& text);
// "20s", "500ms", "2m", "1500us", or plain seconds -> microseconds.
Result<std::int64_t> parse_duration_us(const std::string& text);

struct LoadRunOptions {
  std::string out_dir;    // summary.json, windows.jsonl (created)
  std::string backend;    // external backend endpoint; empty: embedded
  std::string city_file;  // with `backend`: from provision_city()
  std::string data_dir;   // embedded backend's store; default out/backend-data
  std::string backend_listen = "tcp://127.0.0.1:*";  // embedded backend's endpoint
  bool durable = true;                               // embedded backend: fsync every commit (FULL)
  // Embedded backend: uploads waiting together are ingested in one transaction, one commit
  // (backend::ServerOptions::group_commit_max_requests); 1 commits each batch alone.
  std::size_t group_commit = 64;
  std::int64_t agents = 0;  // > 0: coordinate this many agents, no local load
  std::string coordinator_listen = "tcp://127.0.0.1:*";
  std::int64_t agents_wait_us = 60'000'000;  // for agents to say hello, and to get ready
  bool sweep = false;                        // one flat step per rate instead of the curve
  std::vector<double> sweep_rates;           // the steps; empty: doubling from the plan's rate
  bool sweep_until_saturated = true;         // stop the sweep at the first saturated step
  bool quiet = false;                        // no progress or report on stdout
  // Called once the coordinator is listening, with its endpoint (tests, and the CLI's banner).
  std::function<void(const std::string&)> on_coordinator_listening;
};

// Exit codes of `citycard load` and `citycard agent`.
inline constexpr int kLoadExitOk = 0;
inline constexpr int kLoadExitErrors = 1;  // ran, but errors, refusals, unfinished work, or
                                           // an unbalanced ledger
inline constexpr int kLoadExitUsage = 2;   // could not run

int run_load(const LoadPlan& plan, const LoadRunOptions& options);

// Issues the plan's city into the backend store under `data_dir` (created if needed; the
// backend must not be running on it) with the backend's key seed, and writes the city file
// the load generator needs. Returns the city file's path.
Result<std::string> provision_city(const LoadPlan& plan, const std::string& data_dir,
                                   std::uint64_t key_seed);

struct AgentOptions {
  std::string coordinator;  // tcp://host:port of `load --coordinator-listen`
  std::string name;         // default: agent-<pid>
  std::int64_t threads = 1;
  std::int64_t wait_us = 60'000'000;  // for the assignment and the start signal
  bool quiet = false;
};
int run_agent(const AgentOptions& options);

// The subcommands: parse their own options, return the exit code.
int cmd_load(const std::vector<std::string>& args);
int cmd_agent(const std::vector<std::string>& args);

}  // namespace citycard::scenarios
