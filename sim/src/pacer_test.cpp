#include "citycard/sim/pacer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace citycard::sim {
namespace {

std::vector<std::int64_t> all_arrivals(Pacer& p) {
  std::vector<std::int64_t> out;
  while (auto t = p.next()) out.push_back(*t);
  return out;
}

TEST(RateCurve, RejectsBadSegments) {
  EXPECT_FALSE(RateCurve::make({{0, 10, 1}, {5, 20, 1}}).is_ok());  // overlap
  EXPECT_FALSE(RateCurve::make({{10, 10, 1}}).is_ok());             // empty
  EXPECT_FALSE(RateCurve::make({{0, 10, -1}}).is_ok());             // negative rate
  EXPECT_FALSE(RateCurve::make({{0, 10, NAN}}).is_ok());
  EXPECT_FALSE(RateCurve::make({{0, 10, 2 * RateCurve::kRatePerSMax}}).is_ok());
  EXPECT_TRUE(RateCurve::make({{0, 10, 1}, {20, 30, 0}}).is_ok());
}

TEST(RateCurve, IntegratesAndScales) {
  auto c = RateCurve::make({{0, 1'000'000, 100}, {2'000'000, 3'000'000, 300}});
  ASSERT_TRUE(c.is_ok());
  EXPECT_DOUBLE_EQ(c->expected_arrivals(3'000'000), 400);
  EXPECT_DOUBLE_EQ(c->expected_arrivals(1'500'000), 100);
  EXPECT_DOUBLE_EQ(c->rate_at(1'500'000), 0);
  EXPECT_DOUBLE_EQ(c->peak_per_s(), 300);
  EXPECT_DOUBLE_EQ(c->scaled(0.5).expected_arrivals(3'000'000), 200);
  EXPECT_EQ(c->end_us(), 3'000'000);
}

TEST(Pacer, ConstantRateIsExactAndEvenlySpaced) {
  auto c = RateCurve::flat(1'000'000, 1000);
  ASSERT_TRUE(c.is_ok());
  Pacer p(*c, ArrivalProcess::kConstant, Rng(5));
  const auto t = all_arrivals(p);
  ASSERT_EQ(t.size(), 1000u);
  for (std::size_t i = 1; i < t.size(); ++i) {
    EXPECT_NEAR(static_cast<double>(t[i] - t[i - 1]), 1000.0, 1.0) << i;
  }
  EXPECT_GE(t.front(), 0);
  EXPECT_LT(t.back(), 1'000'000);
  EXPECT_EQ(p.planned(), 1000u);
}

TEST(Pacer, PoissonCountAndGapsMatchTheRate) {
  // 100,000 arrivals expected: the count is within 5 standard deviations (sqrt(1e5) = 316),
  // and the mean gap within 2% of 100 µs. One seed, so the test is deterministic.
  auto c = RateCurve::flat(10'000'000, 10'000);
  ASSERT_TRUE(c.is_ok());
  Pacer p(*c, ArrivalProcess::kPoisson, Rng(11));
  const auto t = all_arrivals(p);
  EXPECT_NEAR(static_cast<double>(t.size()), 100'000, 5 * 316);
  double sum = 0, sum_sq = 0;
  for (std::size_t i = 1; i < t.size(); ++i) {
    const double g = static_cast<double>(t[i] - t[i - 1]);
    ASSERT_GE(g, 0);
    sum += g;
    sum_sq += g * g;
  }
  const double n = static_cast<double>(t.size() - 1);
  const double mean = sum / n;
  EXPECT_NEAR(mean, 100, 2);
  // Exponential gaps: the standard deviation equals the mean (constant gaps would give 0).
  EXPECT_NEAR(std::sqrt(sum_sq / n - mean * mean), 100, 5);
}

TEST(Pacer, FollowsThePeakCurveAndSkipsQuietGaps) {
  // 1,000/s for a second, nothing for a second, 5,000/s for a second.
  auto c = RateCurve::make(
      {{0, 1'000'000, 1000}, {1'000'000, 2'000'000, 0}, {2'000'000, 3'000'000, 5000}});
  ASSERT_TRUE(c.is_ok());
  for (ArrivalProcess process : {ArrivalProcess::kConstant, ArrivalProcess::kPoisson}) {
    Pacer p(*c, process, Rng(3));
    std::size_t first = 0, gap = 0, peak = 0;
    for (auto t : all_arrivals(p)) {
      if (t < 1'000'000) {
        ++first;
      } else if (t < 2'000'000) {
        ++gap;
      } else {
        ++peak;
      }
    }
    EXPECT_EQ(gap, 0u) << arrival_process_name(process);
    EXPECT_NEAR(static_cast<double>(first), 1000, 5 * 32) << arrival_process_name(process);
    EXPECT_NEAR(static_cast<double>(peak), 5000, 5 * 71) << arrival_process_name(process);
  }
}

TEST(Pacer, SameSeedSameSchedule) {
  auto c = RateCurve::flat(1'000'000, 5000);
  ASSERT_TRUE(c.is_ok());
  Pacer a(*c, ArrivalProcess::kPoisson, Rng(9)), b(*c, ArrivalProcess::kPoisson, Rng(9)),
      other(*c, ArrivalProcess::kPoisson, Rng(10));
  const auto ta = all_arrivals(a);
  EXPECT_EQ(ta, all_arrivals(b));
  EXPECT_NE(ta, all_arrivals(other));
}

TEST(Pacer, EmptyCurvePlansNothing) {
  Pacer p(RateCurve(), ArrivalProcess::kPoisson, Rng(1));
  EXPECT_FALSE(p.next().has_value());
  auto zero = RateCurve::flat(1'000'000, 0);
  ASSERT_TRUE(zero.is_ok());
  Pacer q(*zero, ArrivalProcess::kConstant, Rng(1));
  EXPECT_FALSE(q.next().has_value());
}

TEST(ArrivalProcess, Names) {
  EXPECT_EQ(arrival_process_from_name("poisson"), ArrivalProcess::kPoisson);
  EXPECT_EQ(arrival_process_from_name("constant"), ArrivalProcess::kConstant);
  EXPECT_FALSE(arrival_process_from_name("bursty").has_value());
}

}  // namespace
}  // namespace citycard::sim
