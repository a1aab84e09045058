#include "citycard/sim/event_loop.h"

#include "citycard/protocol/check.h"
#include <cstdio>
#include <cstdlib>

namespace citycard::sim {

void EventLoop::schedule_at(std::int64_t at_us, Action action) {
  if (at_us < now_us_) {
    std::fprintf(stderr, "EventLoop: event scheduled at %lld us, before now (%lld us)\n",
                 static_cast<long long>(at_us), static_cast<long long>(now_us_));
    std::abort();
  }
  queue_.push(Event{at_us, sequence_++, std::move(action)});
}

bool EventLoop::process_one() {
  // priority_queue::top is const; move the action out before popping.
  Event ev = std::move(const_cast<Event&>(queue_.top()));
  queue_.pop();
  CITYCARD_CHECK(ev.at_us >= now_us_, "time went backwards");
  now_us_ = ev.at_us;
  ++processed_;
  ev.action();
  return true;
}

void EventLoop::run_until(std::int64_t until_us) {
  stopped_ = false;
  while (!queue_.empty() && !stopped_ && queue_.top().at_us <= until_us) process_one();
  if (!stopped_ && until_us > now_us_) now_us_ = until_us;
}

void EventLoop::run() {
  stopped_ = false;
  while (!queue_.empty() && !stopped_) process_one();
}

}  // namespace citycard::sim
