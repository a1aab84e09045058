#include "citycard/sim/pacer.h"

#include <algorithm>
#include <cmath>

namespace citycard::sim {

Result<RateCurve> RateCurve::make(std::vector<RateSegment> segments) {
  if (segments.size() > kSegmentsMax) {
    return Result<RateCurve>(
        Errc::kTooLarge, "a rate curve has at most " + std::to_string(kSegmentsMax) + " segments");
  }
  RateCurve c;
  double lambda = 0;
  std::int64_t previous_end = 0;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const RateSegment& s = segments[i];
    const std::string which = "rate segment " + std::to_string(i);
    if (s.start_us < previous_end || s.end_us <= s.start_us) {
      return Result<RateCurve>(Errc::kInvalidArgument,
                               which +
                                   " must start at or after the previous end and end after "
                                   "it starts");
    }
    if (!(s.per_s >= 0) || s.per_s > kRatePerSMax) {
      return Result<RateCurve>(
          Errc::kInvalidArgument,
          which + " needs a rate in [0, " + std::to_string(kRatePerSMax) + "] per second");
    }
    c.cumulative_.push_back(lambda);
    lambda += s.per_s * static_cast<double>(s.end_us - s.start_us) / 1e6;
    previous_end = s.end_us;
  }
  c.segments_ = std::move(segments);
  return c;
}

Result<RateCurve> RateCurve::flat(std::int64_t duration_us, double per_s) {
  return make({RateSegment{0, duration_us, per_s}});
}

double RateCurve::rate_at(std::int64_t t) const {
  for (const auto& s : segments_) {
    if (t >= s.start_us && t < s.end_us) return s.per_s;
  }
  return 0;
}

double RateCurve::peak_per_s() const {
  double peak = 0;
  for (const auto& s : segments_) peak = std::max(peak, s.per_s);
  return peak;
}

double RateCurve::expected_arrivals(std::int64_t t) const {
  double lambda = 0;
  for (const auto& s : segments_) {
    if (t <= s.start_us) break;
    const std::int64_t until = std::min(t, s.end_us);
    lambda += s.per_s * static_cast<double>(until - s.start_us) / 1e6;
  }
  return lambda;
}

RateCurve RateCurve::scaled(double factor) const {
  CITYCARD_CHECK(factor >= 0, "a rate curve cannot be scaled by a negative factor");
  RateCurve c = *this;
  for (auto& s : c.segments_) s.per_s *= factor;
  for (auto& l : c.cumulative_) l *= factor;
  return c;
}

const char* arrival_process_name(ArrivalProcess p) {
  return p == ArrivalProcess::kPoisson ? "poisson" : "constant";
}

std::optional<ArrivalProcess> arrival_process_from_name(const std::string& name) {
  if (name == "poisson") return ArrivalProcess::kPoisson;
  if (name == "constant") return ArrivalProcess::kConstant;
  return std::nullopt;
}

Pacer::Pacer(RateCurve curve, ArrivalProcess process, Rng rng)
    : curve_(std::move(curve)), process_(process), rng_(rng) {
  // A constant process starts at a random phase within its first step (see pacer.h); lambda_
  // is where the "previous" arrival would have been.
  if (process_ == ArrivalProcess::kConstant) lambda_ = rng_.uniform01() - 1.0;
}

std::optional<std::int64_t> Pacer::next() {
  lambda_ += process_ == ArrivalProcess::kPoisson ? rng_.exponential(1.0) : 1.0;
  std::optional<std::int64_t> t = time_at(lambda_);
  if (!t) return std::nullopt;
  // Rounding to whole microseconds must not make time run backwards.
  last_us_ = std::max(last_us_, *t);
  ++planned_;
  return last_us_;
}

std::optional<std::int64_t> Pacer::time_at(double lambda) {
  const auto& segs = curve_.segments_;
  const auto& cum = curve_.cumulative_;
  while (segment_ < segs.size()) {
    const RateSegment& s = segs[segment_];
    const double seg_lambda = s.per_s * static_cast<double>(s.end_us - s.start_us) / 1e6;
    if (s.per_s > 0 && lambda < cum[segment_] + seg_lambda) {
      const double into_us = std::max(0.0, (lambda - cum[segment_]) / s.per_s * 1e6);
      const auto t = s.start_us + static_cast<std::int64_t>(std::floor(into_us));
      return std::min(t, s.end_us - 1);
    }
    ++segment_;
  }
  return std::nullopt;
}

}  // namespace citycard::sim
