// The workers of one process — a plain `citycard load`, or one agent — over that process's
// share of the city: splits the share among its worker threads, runs them step by step, and
// merges their windows and totals.
//
// Threads: construct, prepare() and run() on one thread (the caller's); run() starts one
// thread per worker and joins them before it returns. on_window runs on the caller's thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "citycard/scenarios/load.h"
#include "citycard/sim/clock.h"
#include "load.pb.h"
#include "load_stats.h"
#include "load_worker.h"

namespace citycard::scenarios {

// Splits a city round-robin into `parts` shares (cards and buses alike). kInvalidArgument
// when a share would have no card or no bus.
Result<std::vector<citycard::load::City>> split_city(const citycard::load::City& city,
                                                     std::size_t parts);

// The calendar second (since 2000-01-01, city time) at which `clock` reads zero: records
// carry today's date in China Standard Time, as the backend's calendar expects.
std::int64_t city_calendar_origin(const sim::Clock& clock);

class LocalLoad {
 public:
  // `name` prefixes the workers' random streams ("agent-0" -> "agent-0/worker-1").
  LocalLoad(const LoadKnobs& knobs, std::vector<std::string> op_names,
            const citycard::load::City& share, std::string endpoint, std::string name,
            std::size_t threads, const sim::Clock& clock);
  ~LocalLoad();

  Status prepare();

  // One step: every worker runs its part (1/threads) of `curve`, planned from clock time
  // `start_us`. Windows merged across workers go to on_window, in order, as they complete.
  LoadTotals run(const sim::RateCurve& curve, std::int64_t start_us, std::uint64_t step,
                 const std::function<void(const WindowStats&)>& on_window, std::atomic<bool>& stop);

  std::size_t threads() const { return workers_.size(); }

 private:
  LoadKnobs knobs_;
  std::vector<std::string> op_names_;
  citycard::load::City share_;
  std::string endpoint_;
  std::string name_;
  std::size_t threads_;
  const sim::Clock& clock_;
  zmq::context_t ctx_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace citycard::scenarios
