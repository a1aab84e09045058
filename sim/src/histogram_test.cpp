#include "citycard/sim/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "citycard/sim/rng.h"

namespace citycard::sim {
namespace {

// The exact nearest-rank percentile of a sorted sample.
std::int64_t exact_percentile(const std::vector<std::int64_t>& sorted, double q) {
  const double rank = std::ceil(q / 100.0 * static_cast<double>(sorted.size()) - 1e-9);
  const std::size_t r = rank < 1 ? 1 : static_cast<std::size_t>(rank);
  return sorted[std::min(r, sorted.size()) - 1];
}

// Log-uniform latencies from 1 µs to 1 h: every bucket of the layout gets used.
std::vector<std::int64_t> log_uniform_sample(std::uint64_t seed, std::size_t n) {
  Rng rng(seed);
  std::vector<std::int64_t> v;
  v.reserve(n);
  const double hi = std::log(static_cast<double>(LatencyHistogram::kHighestUs));
  for (std::size_t i = 0; i < n; ++i) {
    v.push_back(static_cast<std::int64_t>(std::exp(rng.uniform01() * hi)));
  }
  return v;
}

const double kQuantiles[] = {0, 1, 50, 90, 99, 99.9, 99.99, 100};

TEST(LatencyHistogram, EmptyReadsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile_us(99), 0);
  EXPECT_EQ(h.min_us(), 0);
  EXPECT_EQ(h.max_us(), 0);
}

TEST(LatencyHistogram, SmallValuesAreExact) {
  // Below 2048 µs every microsecond has its own slot.
  LatencyHistogram h;
  std::vector<std::int64_t> v;
  for (std::int64_t i = 0; i < 2048; ++i) {
    h.record(i);
    v.push_back(i);
  }
  for (double q : kQuantiles) EXPECT_EQ(h.percentile_us(q), exact_percentile(v, q)) << q;
  EXPECT_EQ(h.min_us(), 0);
  EXPECT_EQ(h.max_us(), 2047);
}

TEST(LatencyHistogram, SlotWidthKeepsThreeSignificantDigits) {
  for (std::int64_t v = 1; v < LatencyHistogram::kHighestUs; v = v * 3 / 2 + 1) {
    const std::int64_t lo = LatencyHistogram::lowest_equivalent_us(v);
    const std::int64_t hi = LatencyHistogram::highest_equivalent_us(v);
    ASSERT_LE(lo, v);
    ASSERT_GE(hi, v);
    ASSERT_LE(hi - lo + 1, std::max<std::int64_t>(1, v / 1000)) << v;
  }
}

TEST(LatencyHistogram, PercentilesOfAKnownSampleWithinPrecision) {
  std::vector<std::int64_t> v = log_uniform_sample(42, 200'000);
  LatencyHistogram h;
  for (auto x : v) h.record(x);
  std::sort(v.begin(), v.end());
  ASSERT_EQ(h.count(), v.size());
  EXPECT_EQ(h.max_us(), v.back());
  EXPECT_EQ(h.min_us(), v.front());
  for (double q : kQuantiles) {
    const std::int64_t exact = exact_percentile(v, q);
    const std::int64_t got = h.percentile_us(q);
    EXPECT_GE(got, exact) << "q=" << q;
    EXPECT_LE(got - exact, std::max<std::int64_t>(0, exact / 1000)) << "q=" << q;
  }
}

TEST(LatencyHistogram, PercentilesOfAConstantAndABimodalSample) {
  LatencyHistogram h;
  h.record_n(5'000, 990);   // 990 requests at 5 ms
  h.record_n(250'000, 10);  // 10 at 250 ms
  EXPECT_EQ(h.percentile_us(50), LatencyHistogram::highest_equivalent_us(5'000));
  EXPECT_EQ(h.percentile_us(99), LatencyHistogram::highest_equivalent_us(5'000));
  // Rank 991 of 1000 is the first slow one.
  EXPECT_EQ(h.percentile_us(99.1), 250'000);
  EXPECT_EQ(h.percentile_us(100), 250'000);
  EXPECT_NEAR(h.mean_us(), (990 * 5'000.0 + 10 * 250'000.0) / 1000, 1e-6);
}

TEST(LatencyHistogram, MergeEqualsRecordingEverything) {
  const std::vector<std::int64_t> v = log_uniform_sample(7, 60'000);
  LatencyHistogram all, parts[3];
  for (std::size_t i = 0; i < v.size(); ++i) {
    all.record(v[i]);
    parts[i % 3].record(v[i]);
  }
  LatencyHistogram merged;
  for (const auto& p : parts) merged.merge(p);
  EXPECT_EQ(merged, all);
  for (double q : kQuantiles) EXPECT_EQ(merged.percentile_us(q), all.percentile_us(q));
}

TEST(LatencyHistogram, ValuesOverAnHourSaturateButKeepTheExactMax) {
  LatencyHistogram h;
  h.record(10);
  h.record(5 * LatencyHistogram::kHighestUs);
  EXPECT_EQ(h.saturated(), 1u);
  EXPECT_EQ(h.max_us(), 5 * LatencyHistogram::kHighestUs);
  EXPECT_EQ(h.percentile_us(100), 5 * LatencyHistogram::kHighestUs);
  EXPECT_EQ(h.percentile_us(50), 10);
}

TEST(LatencyHistogram, EncodeDecodeRoundTrips) {
  LatencyHistogram h;
  for (auto x : log_uniform_sample(3, 10'000)) h.record(x);
  h.record(2 * LatencyHistogram::kHighestUs);
  const Bytes b = h.encode();
  EXPECT_LT(b.size(), 40'000u);  // sparse: far below the dense 184 KiB
  auto d = LatencyHistogram::decode(b);
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(*d, h);

  auto empty = LatencyHistogram::decode(LatencyHistogram().encode());
  ASSERT_TRUE(empty.is_ok());
  EXPECT_EQ(*empty, LatencyHistogram());
}

TEST(LatencyHistogram, DecodeRejectsDamage) {
  LatencyHistogram h;
  h.record_n(100, 3);
  h.record(70'000);
  const Bytes good = h.encode();
  ASSERT_TRUE(LatencyHistogram::decode(good).is_ok());

  Bytes truncated(good.begin(), good.end() - 1);
  EXPECT_EQ(LatencyHistogram::decode(truncated).status().code(), Errc::kMalformed);
  Bytes trailing = good;
  trailing.push_back(0);
  EXPECT_EQ(LatencyHistogram::decode(trailing).status().code(), Errc::kMalformed);
  Bytes magic = good;
  magic[0] = 'X';
  EXPECT_EQ(LatencyHistogram::decode(magic).status().code(), Errc::kMalformed);
  Bytes count = good;
  count[3] = 5;  // the total no longer matches the slots
  EXPECT_EQ(LatencyHistogram::decode(count).status().code(), Errc::kMalformed);
  EXPECT_EQ(LatencyHistogram::decode(Bytes{}).status().code(), Errc::kMalformed);
}

}  // namespace
}  // namespace citycard::sim

namespace citycard::sim {
namespace {
TEST(LatencyHistogram, SlotsListTheNonZeroSlotsWithTheirCounts) {
  LatencyHistogram h;
  EXPECT_TRUE(h.slots().empty());
  h.record_n(7, 3);
  h.record(1'000'000);
  h.record(1'000'100);
  const auto s = h.slots();
  ASSERT_EQ(s.size(), 2u);  // near 1 s a slot is 512 µs wide: both values share one
  EXPECT_EQ(s[0].first, 7);
  EXPECT_EQ(s[0].second, 3u);
  EXPECT_LE(s[1].first, 1'000'000);
  EXPECT_EQ(s[1].second, 2u);
}
}  // namespace
}  // namespace citycard::sim
