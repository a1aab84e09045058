// A latency histogram in the manner of HdrHistogram: log-linear buckets that keep three
// significant decimal digits over the whole range from 1 µs to 1 hour, so a percentile read
// from it is within 0.1% of the true value at every scale, in constant memory and with a
// constant-time record().
//
// Layout (HdrHistogram's, with lowest = 1 µs): 2048 sub-buckets cover 0..2047 µs exactly;
// each further bucket doubles the range and halves the resolution, so a value v lands in a
// slot at most v/1024 wide. 22 buckets reach 3.6e9 µs; the dense counts array has 23,552
// slots (184 KiB).
//
// Contract:
// - record() takes microseconds. Negative values are a programmer error. Values above
//   kHighestUs are recorded as kHighestUs and counted in saturated(); max() still reports the
//   exact largest value recorded.
// - percentile(q) is the nearest-rank percentile: the smallest recorded slot whose cumulative
//   count reaches ceil(q/100 * count()), reported as the highest value in that slot but never
//   above max(). So it is never below the exact nearest-rank value and over it by at most the
//   slot width (under 0.1% of it). A percentile that falls among saturated values reports
//   max().
// - merge() adds another histogram's counts: merging histograms of parts equals recording the
//   whole (the counts are equal, so are all percentiles).
// - encode()/decode() carry a histogram between processes (agents to the coordinator) as the
//   non-zero slots only, typically a few KiB; decode() checks everything it reads.
//
// Threads: not thread-safe; each recording thread keeps its own and merges at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"

namespace citycard::sim {

class LatencyHistogram {
 public:
  static constexpr std::int64_t kHighestUs = 3'600'000'000;  // 1 hour
  static constexpr int kSignificantDigits = 3;

  LatencyHistogram();

  void record(std::int64_t value_us) { record_n(value_us, 1); }
  void record_n(std::int64_t value_us, std::uint64_t n);
  void merge(const LatencyHistogram& other);
  void reset();

  std::uint64_t count() const { return count_; }
  std::uint64_t saturated() const { return saturated_; }
  // 0 when empty.
  std::int64_t min_us() const { return count_ ? min_ : 0; }
  std::int64_t max_us() const { return max_; }
  double mean_us() const { return count_ ? sum_us_ / static_cast<double>(count_) : 0; }
  // q in [0, 100]; 0 when empty. See the contract above.
  std::int64_t percentile_us(double q) const;

  // The non-zero slots, lowest first: (lowest value in the slot, count). For drawing the
  // distribution; values over the range are in the top slot.
  std::vector<std::pair<std::int64_t, std::uint64_t>> slots() const;

  Bytes encode() const;
  static Result<LatencyHistogram> decode(ByteView bytes);

  // Counts, extremes and sum are equal (the sum is a double; equal for equal inputs).
  bool operator==(const LatencyHistogram& other) const;

  // The range of values that share `value_us`'s slot: [lowest, highest].
  static std::int64_t lowest_equivalent_us(std::int64_t value_us);
  static std::int64_t highest_equivalent_us(std::int64_t value_us);

 private:
  static std::size_t index_of(std::int64_t value_us);
  static std::int64_t value_at_index(std::size_t index);

  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t saturated_ = 0;
  std::int64_t min_ = 0;
  std::int64_t max_ = 0;
  double sum_us_ = 0;
};

}  // namespace citycard::sim
