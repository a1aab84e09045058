#include "citycard/sim/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

namespace citycard::sim {

namespace {

// HdrHistogram's parameters for lowest = 1, highest = 1 h, 3 significant digits: the smallest
// power of two above 2 * 10^3 single-unit values is 2048.
constexpr int kSubBucketCountMagnitude = 11;
constexpr std::int64_t kSubBucketCount = std::int64_t{1} << kSubBucketCountMagnitude;  // 2048
constexpr int kSubBucketHalfCountMagnitude = kSubBucketCountMagnitude - 1;
constexpr std::int64_t kSubBucketHalfCount = kSubBucketCount / 2;  // 1024
constexpr std::uint64_t kSubBucketMask = static_cast<std::uint64_t>(kSubBucketCount - 1);

constexpr int bucket_count() {
  int buckets = 1;
  std::int64_t smallest_untrackable = kSubBucketCount;
  while (smallest_untrackable <= LatencyHistogram::kHighestUs) {
    smallest_untrackable <<= 1;
    ++buckets;
  }
  return buckets;
}
constexpr int kBucketCount = bucket_count();  // 22
constexpr std::size_t kCountsLen =
    static_cast<std::size_t>(kBucketCount + 1) * static_cast<std::size_t>(kSubBucketHalfCount);
static_assert(kCountsLen == 23'552, "layout as documented in histogram.h");

int bucket_index(std::int64_t v) {
  // The power-of-two bucket of v: 0 for v < 2048, then one per doubling.
  const int pow2ceiling = 64 - std::countl_zero(static_cast<std::uint64_t>(v) | kSubBucketMask);
  return pow2ceiling - (kSubBucketHalfCountMagnitude + 1);
}

// Encoding: "CH" magic, version 1, then LEB128 varints: count, saturated, min, max, the sum
// as the bits of a double, the number of non-zero slots, and per slot (gap since the previous
// slot index + 1, count).
constexpr std::uint8_t kMagic0 = 'C';
constexpr std::uint8_t kMagic1 = 'H';
constexpr std::uint8_t kEncodingVersion = 1;

void put_varint(Bytes& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
}

bool get_varint(ByteView in, std::size_t& off, std::uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (off >= in.size()) return false;
    const std::uint8_t b = in[off++];
    v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;  // more than 10 bytes: not a varint we wrote
}

}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(kCountsLen, 0) {
  reset();
}

std::size_t LatencyHistogram::index_of(std::int64_t v) {
  const int bucket = bucket_index(v);
  const std::int64_t sub_bucket = v >> bucket;
  const std::int64_t base = static_cast<std::int64_t>(bucket + 1) << kSubBucketHalfCountMagnitude;
  return static_cast<std::size_t>(base + (sub_bucket - kSubBucketHalfCount));
}

std::int64_t LatencyHistogram::value_at_index(std::size_t index) {
  int bucket = static_cast<int>(index >> kSubBucketHalfCountMagnitude) - 1;
  std::int64_t sub_bucket =
      static_cast<std::int64_t>(index & static_cast<std::size_t>(kSubBucketHalfCount - 1)) +
      kSubBucketHalfCount;
  if (bucket < 0) {
    sub_bucket -= kSubBucketHalfCount;
    bucket = 0;
  }
  return sub_bucket << bucket;
}

std::int64_t LatencyHistogram::lowest_equivalent_us(std::int64_t v) {
  return value_at_index(index_of(std::clamp<std::int64_t>(v, 0, kHighestUs)));
}

std::int64_t LatencyHistogram::highest_equivalent_us(std::int64_t v) {
  v = std::clamp<std::int64_t>(v, 0, kHighestUs);
  const int bucket = bucket_index(v);
  const std::int64_t width = std::int64_t{1} << bucket;
  return lowest_equivalent_us(v) + width - 1;
}

void LatencyHistogram::record_n(std::int64_t value_us, std::uint64_t n) {
  CITYCARD_CHECK(value_us >= 0, "a latency cannot be negative");
  if (n == 0) return;
  if (value_us > max_) max_ = value_us;
  if (value_us < min_) min_ = value_us;
  if (value_us > kHighestUs) {
    saturated_ += n;
    value_us = kHighestUs;
  }
  counts_[index_of(value_us)] += n;
  count_ += n;
  sum_us_ += static_cast<double>(value_us) * static_cast<double>(n);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (std::size_t i = 0; i < kCountsLen; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  saturated_ += other.saturated_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_us_ += other.sum_us_;
}

void LatencyHistogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  saturated_ = 0;
  min_ = std::numeric_limits<std::int64_t>::max();
  max_ = 0;
  sum_us_ = 0;
}

std::int64_t LatencyHistogram::percentile_us(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 100.0);
  // Nearest rank; the small epsilon keeps 99.9% of 1000 at rank 999, not 1000, when the
  // product rounds up by an ulp.
  const double rank_f = std::ceil(q / 100.0 * static_cast<double>(count_) - 1e-9);
  const std::uint64_t rank =
      std::clamp<std::uint64_t>(rank_f < 1 ? 1 : static_cast<std::uint64_t>(rank_f), 1, count_);
  std::uint64_t seen = 0;
  const std::size_t saturated_slot = index_of(kHighestUs);
  for (std::size_t i = 0; i < kCountsLen; ++i) {
    seen += counts_[i];
    if (seen < rank) continue;
    // Values over the range share the top slot: report the exact maximum rather than 1 h.
    if (i == saturated_slot && saturated_ > 0) return max_;
    return std::min(highest_equivalent_us(value_at_index(i)), max_);
  }
  return max_;  // unreachable when the counts sum to count_
}

std::vector<std::pair<std::int64_t, std::uint64_t>> LatencyHistogram::slots() const {
  std::vector<std::pair<std::int64_t, std::uint64_t>> out;
  for (std::size_t i = 0; i < kCountsLen; ++i) {
    if (counts_[i]) out.emplace_back(value_at_index(i), counts_[i]);
  }
  return out;
}

bool LatencyHistogram::operator==(const LatencyHistogram& o) const {
  return count_ == o.count_ && saturated_ == o.saturated_ && min_ == o.min_ && max_ == o.max_ &&
         sum_us_ == o.sum_us_ && counts_ == o.counts_;
}

Bytes LatencyHistogram::encode() const {
  Bytes out{kMagic0, kMagic1, kEncodingVersion};
  put_varint(out, count_);
  put_varint(out, saturated_);
  put_varint(out, static_cast<std::uint64_t>(count_ ? min_ : 0));
  put_varint(out, static_cast<std::uint64_t>(max_));
  std::uint64_t sum_bits;
  std::memcpy(&sum_bits, &sum_us_, sizeof sum_bits);
  put_varint(out, sum_bits);
  std::uint64_t slots = 0;
  for (std::uint64_t c : counts_) slots += c != 0;
  put_varint(out, slots);
  std::size_t next = 0;  // the index after the previous non-zero slot
  for (std::size_t i = 0; i < kCountsLen; ++i) {
    if (counts_[i] == 0) continue;
    put_varint(out, i - next);
    put_varint(out, counts_[i]);
    next = i + 1;
  }
  return out;
}

Result<LatencyHistogram> LatencyHistogram::decode(ByteView in) {
  auto bad = [](const std::string& why) {
    return Result<LatencyHistogram>(Errc::kMalformed, "latency histogram: " + why);
  };
  if (in.size() < 3 || in[0] != kMagic0 || in[1] != kMagic1) return bad("bad magic");
  if (in[2] != kEncodingVersion) return bad("unknown version " + std::to_string(in[2]));
  std::size_t off = 3;
  std::uint64_t count, saturated, min, max, sum_bits, slots;
  if (!get_varint(in, off, count) || !get_varint(in, off, saturated) || !get_varint(in, off, min) ||
      !get_varint(in, off, max) || !get_varint(in, off, sum_bits) || !get_varint(in, off, slots)) {
    return bad("truncated header");
  }
  if (slots > kCountsLen) return bad("more slots than the layout has");
  constexpr auto kMaxValue = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (min > kMaxValue || max > kMaxValue || min > max || saturated > count) {
    return bad("inconsistent header");
  }
  LatencyHistogram h;
  std::size_t next = 0;
  std::uint64_t total = 0;
  for (std::uint64_t s = 0; s < slots; ++s) {
    std::uint64_t gap, c;
    if (!get_varint(in, off, gap) || !get_varint(in, off, c)) return bad("truncated slots");
    if (gap >= kCountsLen - next || c == 0) return bad("slot out of range or empty");
    const std::size_t i = next + static_cast<std::size_t>(gap);
    h.counts_[i] = c;
    if (total + c < total) return bad("count overflow");
    total += c;
    next = i + 1;
  }
  if (off != in.size()) return bad("trailing bytes");
  if (total != count) return bad("slot counts do not sum to the count");
  h.count_ = count;
  h.saturated_ = saturated;
  if (count) h.min_ = static_cast<std::int64_t>(min);
  h.max_ = static_cast<std::int64_t>(max);
  std::memcpy(&h.sum_us_, &sum_bits, sizeof sum_bits);
  return h;
}

}  // namespace citycard::sim
