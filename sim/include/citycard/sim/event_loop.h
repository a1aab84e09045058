// The discrete-event core of virtual-time runs: one priority queue keyed by (time, sequence).
// Events at the same time run in the order they were scheduled (FIFO), so a run is
// deterministic. Time never goes backwards: scheduling in the past is a programmer error.
//
// Single-threaded: every method must be called from the thread that runs the loop.
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

#include "citycard/sim/clock.h"

namespace citycard::sim {

class EventLoop final : public Clock {
 public:
  using Action = std::function<void()>;

  std::int64_t now_us() const override { return now_us_; }

  void schedule_at(std::int64_t at_us, Action action);
  void schedule_after(std::int64_t delay_us, Action action) {
    schedule_at(now_us_ + delay_us, std::move(action));
  }

  // Runs events until the queue is empty, stop() is called, or the next event is after
  // `until_us`; the clock then reads `until_us` (or the last event's time if stopped).
  void run_until(std::int64_t until_us);
  // Runs until the queue is empty or stop() is called.
  void run();
  void stop() { stopped_ = true; }

  std::uint64_t events_scheduled() const { return sequence_; }
  std::uint64_t events_processed() const { return processed_; }
  std::size_t pending() const { return queue_.size(); }

 private:
  struct Event {
    std::int64_t at_us;
    std::uint64_t seq;
    Action action;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.at_us != b.at_us ? a.at_us > b.at_us : a.seq > b.seq;
    }
  };
  bool process_one();

  std::priority_queue<Event, std::vector<Event>, Later> queue_;
  std::int64_t now_us_ = 0;
  std::uint64_t sequence_ = 0;
  std::uint64_t processed_ = 0;
  bool stopped_ = false;
};

}  // namespace citycard::sim
