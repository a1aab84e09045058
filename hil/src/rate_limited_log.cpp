#include "citycard/hil/rate_limited_log.h"

#include <algorithm>

namespace citycard::hil {

RateLimitedLog::RateLimitedLog(Sink sink, const sim::Clock& clock, double lines_per_s,
                               std::uint32_t burst_lines)
    : sink_(std::move(sink)),
      clock_(clock),
      lines_per_us_(lines_per_s / 1e6),
      burst_lines_(std::max<double>(1.0, burst_lines)),
      tokens_(burst_lines_),
      last_refill_us_(clock.now_us()) {}

void RateLimitedLog::log(std::string_view line) {
  if (!sink_) return;
  std::string out;
  {
    std::lock_guard lock(mu_);
    const std::int64_t now = clock_.now_us();
    tokens_ = std::min(burst_lines_,
                       tokens_ + static_cast<double>(now - last_refill_us_) * lines_per_us_);
    last_refill_us_ = now;
    if (tokens_ < 1.0) {
      ++suppressed_total_;
      ++suppressed_since_last_;
      return;
    }
    tokens_ -= 1.0;
    ++written_;
    if (suppressed_since_last_ > 0) {
      out = "(" + std::to_string(suppressed_since_last_) + " lines suppressed) ";
      suppressed_since_last_ = 0;
    }
    out.append(line);
    // The sink runs under the lock so lines keep their order across threads.
    sink_(out);
  }
}

std::uint64_t RateLimitedLog::written() const {
  std::lock_guard lock(mu_);
  return written_;
}

std::uint64_t RateLimitedLog::suppressed() const {
  std::lock_guard lock(mu_);
  return suppressed_total_;
}

}  // namespace citycard::hil
