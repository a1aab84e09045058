#include "citycard/devices/terminal_guards.h"

#include <string>

namespace citycard::devices {

Result<protocol::Response> BudgetLink::transceive(const protocol::Command& command) {
  if (exceeded_ || used_us() > budget_.budget_us || exchanges_ >= budget_.exchanges_max) {
    exceeded_ = true;
    return Result<protocol::Response>(
        Errc::kTimeout, "transaction time budget exceeded: " + std::to_string(used_us()) + " us, " +
                            std::to_string(exchanges_) + " exchanges");
  }
  ++exchanges_;
  return inner_.transceive(command);
}

void DoubleTapGuard::expire(std::int64_t now_us) {
  while (!order_.empty() &&
         (now_us - order_.front().first >= window_us_ || order_.size() > cards_max_)) {
    const auto it = last_us_.find(order_.front().second);
    // Only the newest entry of a card counts; older ones in the order are stale.
    if (it != last_us_.end() && it->second == order_.front().first) last_us_.erase(it);
    order_.pop_front();
  }
}

bool DoubleTapGuard::refuses(const protocol::Serial8& serial, std::int64_t now_us) {
  expire(now_us);
  const auto it = last_us_.find(serial);
  return it != last_us_.end() && now_us - it->second < window_us_;
}

void DoubleTapGuard::sold(const protocol::Serial8& serial, std::int64_t now_us) {
  last_us_[serial] = now_us;
  order_.emplace_back(now_us, serial);
  expire(now_us);
}

std::int64_t TerminalClock::sign_on(std::int64_t server_time_us) {
  const std::int64_t correction = server_time_us - clock_.now_us();
  clock_.correct_to(server_time_us);
  return correction;
}

}  // namespace citycard::devices
