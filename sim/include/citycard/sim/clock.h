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

// A clock that runs at a rate off another clock, for per-terminal drift: from the moment the
// drift was set, it gains drift_ppm microseconds per second of base time; an offset holds the
// error accumulated before, and sign-on corrections adjust it.
class DriftingClock final : public Clock {
 public:
  explicit DriftingClock(const Clock& base, double drift_ppm = 0)
      : base_(base), drift_ppm_(drift_ppm), since_us_(base.now_us()) {}
  std::int64_t now_us() const override;
  // Changes the rate from now on; the error so far is kept.
  void set_drift_ppm(double drift_ppm);
  double drift_ppm() const { return drift_ppm_; }
  void correct_to(std::int64_t true_now_us);  // sign-on: set our reading to the server's
  std::int64_t error_us() const { return now_us() - base_.now_us(); }

 private:
  const Clock& base_;
  double drift_ppm_;
  std::int64_t since_us_;
  std::int64_t offset_us_ = 0;
};

}  // namespace citycard::sim
