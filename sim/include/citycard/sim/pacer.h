// Open-loop load pacing: when each request of a load run is *planned* to be sent, fixed in
// advance by a rate curve and the run's seed, whatever the system under test does. A load
// generator that sends late still measures from the planned time, so a slow backend cannot
// hide its queueing by slowing the generator down (no coordinated omission).
//
// RateCurve: piecewise-constant arrivals per second over [0, end_us) of the schedule (the
// scenario's peak curve, mapped onto wall time). Pacer: the arrival times of a Poisson or a
// constant-rate process under that curve. Both processes are made the same way: arrivals at
// unit steps of the curve's cumulative intensity Λ(t) = ∫ rate — exponential steps (Poisson,
// memoryless across segment boundaries) or steps of exactly 1 (constant), started at a random
// phase so that several constant pacers do not fire in step.
//
// Threads: a RateCurve is immutable and may be shared; a Pacer belongs to one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "citycard/protocol/status.h"
#include "citycard/sim/rng.h"

namespace citycard::sim {

struct RateSegment {
  std::int64_t start_us = 0;
  std::int64_t end_us = 0;
  double per_s = 0;  // arrivals per second within [start_us, end_us)
  bool operator==(const RateSegment&) const = default;
};

class RateCurve {
 public:
  // Limits: a curve of more segments, or a faster rate, is refused rather than run.
  static constexpr std::size_t kSegmentsMax = 10'000;
  static constexpr double kRatePerSMax = 1e8;

  RateCurve() = default;
  // Segments must be in order, not overlap, have start < end and 0 <= rate <= kRatePerSMax.
  // Gaps between segments have rate 0. kInvalidArgument naming the first bad segment.
  static Result<RateCurve> make(std::vector<RateSegment> segments);
  // One segment [0, duration_us) at `per_s`.
  static Result<RateCurve> flat(std::int64_t duration_us, double per_s);

  const std::vector<RateSegment>& segments() const { return segments_; }
  std::int64_t end_us() const { return segments_.empty() ? 0 : segments_.back().end_us; }
  double rate_at(std::int64_t t_us) const;
  double peak_per_s() const;
  // ∫ rate over [0, t_us): the number of arrivals expected before t_us.
  double expected_arrivals(std::int64_t t_us) const;
  // Every rate multiplied by `factor` (>= 0): a worker's share, or a scaled peak.
  RateCurve scaled(double factor) const;

 private:
  friend class Pacer;
  std::vector<RateSegment> segments_;
  std::vector<double> cumulative_;  // Λ at each segment's start
};

enum class ArrivalProcess : std::uint8_t { kPoisson, kConstant };
const char* arrival_process_name(ArrivalProcess p);
// "poisson" or "constant".
std::optional<ArrivalProcess> arrival_process_from_name(const std::string& name);

class Pacer {
 public:
  Pacer(RateCurve curve, ArrivalProcess process, Rng rng);

  // The planned time of the next arrival (µs since the schedule's start), non-decreasing;
  // nullopt once the curve is over.
  std::optional<std::int64_t> next();
  std::uint64_t planned() const { return planned_; }
  const RateCurve& curve() const { return curve_; }

 private:
  // The time at which the cumulative intensity reaches `lambda`, or nullopt past the end.
  std::optional<std::int64_t> time_at(double lambda);

  RateCurve curve_;
  ArrivalProcess process_;
  Rng rng_;
  double lambda_ = 0;        // cumulative intensity of the last arrival
  std::size_t segment_ = 0;  // search cursor: Λ only grows
  std::int64_t last_us_ = 0;
  std::uint64_t planned_ = 0;
};

}  // namespace citycard::sim
