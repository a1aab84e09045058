#include "citycard/hil/rate_limited_log.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace citycard::hil {
namespace {

class ManualClock final : public sim::Clock {
 public:
  std::int64_t now_us() const override { return now; }
  std::int64_t now = 0;
};

TEST(RateLimitedLog, PassesABurstThenTheRateAndSaysWhatItDropped) {
  ManualClock clock;
  std::vector<std::string> lines;
  RateLimitedLog log([&](std::string_view l) { lines.emplace_back(l); }, clock, /*lines_per_s=*/2,
                     /*burst=*/3);
  for (int i = 0; i < 10; ++i) log.log("line " + std::to_string(i));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(log.suppressed(), 7u);
  clock.now += 500'000;  // one more token
  log.log("after");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines.back(), "(7 lines suppressed) after");
  log.log("again");
  EXPECT_EQ(lines.size(), 4u);
  clock.now += 100'000'000;  // tokens refill only up to the burst
  for (int i = 0; i < 10; ++i) log.log("x");
  EXPECT_EQ(lines.size(), 7u);
  EXPECT_EQ(log.written(), 7u);
}

TEST(RateLimitedLog, WithoutASinkNothingHappens) {
  ManualClock clock;
  RateLimitedLog log({}, clock);
  log.log("dropped");
  EXPECT_FALSE(log.enabled());
  EXPECT_EQ(log.suppressed(), 0u);
}

}  // namespace
}  // namespace citycard::hil
