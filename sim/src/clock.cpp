#include "citycard/sim/clock.h"

#include <chrono>

namespace citycard::sim {

namespace {
std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

WallClock::WallClock() : origin_ns_(steady_ns()) {}

std::int64_t WallClock::now_us() const { return (steady_ns() - origin_ns_) / 1000; }

std::int64_t unix_time_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t DriftingClock::now_us() const {
  const std::int64_t t = base_.now_us();
  return t + static_cast<std::int64_t>(static_cast<double>(t - since_us_) * drift_ppm_ / 1e6) +
         offset_us_;
}

void DriftingClock::set_drift_ppm(double drift_ppm) {
  offset_us_ = now_us() - base_.now_us();
  since_us_ = base_.now_us();
  drift_ppm_ = drift_ppm;
}

void DriftingClock::correct_to(std::int64_t true_now_us) { offset_us_ += true_now_us - now_us(); }

}  // namespace citycard::sim
