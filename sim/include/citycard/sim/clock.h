// Time is an interface. Devices and the backend read time only through a Clock; virtual-time
// runs hand them the event loop's clock, wall-time runs a WallClock. Nothing outside sim/
// reads the system clock.
#pragma once

#include <cstdint>

namespace citycard::sim {

class Clock {
 public:
  virtual ~Clock() = default;
  // Microseconds since the run's epoch (virtual: scenario start; wall: process start).
  virtual std::int64_t now_us() const = 0;
};

// Monotonic wall time. Thread-safe.
class WallClock final : public Clock {
 public:
  WallClock();
  std::int64_t now_us() const override;

 private:
  std::int64_t origin_ns_;
};

// Calendar wall time, for naming run folders and stamping certificates: seconds since the Unix
// epoch. Not for anything a deterministic run depends on.
std::int64_t unix_time_s();

// A clock that runs at a rate off another clock, for per-terminal drift: reads base time
// scaled by (1 + drift_ppm / 1e6) plus an offset that sign-on corrections adjust.
class DriftingClock final : public Clock {
 public:
  DriftingClock(const Clock& base, double drift_ppm, std::int64_t offset_us = 0)
      : base_(base), drift_ppm_(drift_ppm), offset_us_(offset_us) {}
  std::int64_t now_us() const override;
  void correct_to(std::int64_t true_now_us);  // sign-on: set our reading to the server's

 private:
  const Clock& base_;
  double drift_ppm_;
  std::int64_t offset_us_;
};

}  // namespace citycard::sim
