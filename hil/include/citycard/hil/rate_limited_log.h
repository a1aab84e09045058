// A log that cannot flood: a token bucket in front of a sink. nfc-poll's wait-for-removal
// loop alone sends ~15,000 presence checks a second (PN532.md); logging each would drown the
// emulator and its terminal. Lines over the rate are counted, and the next line that passes
// says how many were dropped.
//
// Thread-safe. Reads time only from the clock it is given.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include "citycard/sim/clock.h"

namespace citycard::hil {

class RateLimitedLog {
 public:
  using Sink = std::function<void(std::string_view line)>;

  // An empty sink drops everything (and counts nothing as suppressed).
  RateLimitedLog(Sink sink, const sim::Clock& clock, double lines_per_s = 20.0,
                 std::uint32_t burst_lines = 40);

  void log(std::string_view line);
  bool enabled() const { return static_cast<bool>(sink_); }
  std::uint64_t written() const;
  std::uint64_t suppressed() const;

 private:
  Sink sink_;
  const sim::Clock& clock_;
  const double lines_per_us_;
  const double burst_lines_;
  mutable std::mutex mu_;
  double tokens_;
  std::int64_t last_refill_us_;
  std::uint64_t written_ = 0;
  std::uint64_t suppressed_total_ = 0;
  std::uint64_t suppressed_since_last_ = 0;
};

}  // namespace citycard::hil
