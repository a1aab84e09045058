#include "citycard/backend/calendar.h"

#include <gtest/gtest.h>

#include "test_city.h"

namespace citycard::backend {
namespace {

TEST(BackendCalendar, DefaultOriginIsNewYear2024) {
  EXPECT_EQ(kDefaultClockOriginEpoch2000S,
            protocol::epoch2000_from_datetime(array_from_hex<7>("20240101000000")));
  testing::FixedClock clock;
  Calendar cal(clock);
  EXPECT_EQ(cal.today_yyyymmdd(), 20240101);
  EXPECT_EQ(cal.now_datetime(), array_from_hex<7>("20240101000000"));
  clock.advance_us(86'400'000'000LL + 3'661'000'000LL);  // a day, 1 h 1 min 1 s
  EXPECT_EQ(cal.today_yyyymmdd(), 20240102);
  EXPECT_EQ(cal.now_datetime(), array_from_hex<7>("20240102010101"));
}

TEST(BackendCalendar, ValidatesBcdDateTimes) {
  EXPECT_TRUE(Calendar::valid_datetime(array_from_hex<7>("20240229235959")));
  EXPECT_FALSE(Calendar::valid_datetime(array_from_hex<7>("2024022923595A")));
  EXPECT_FALSE(Calendar::valid_datetime(array_from_hex<7>("20241301000000")));
  EXPECT_FALSE(Calendar::valid_datetime(array_from_hex<7>("20240100000000")));
  EXPECT_FALSE(Calendar::valid_datetime(array_from_hex<7>("20240101240000")));
  EXPECT_EQ(Calendar::yyyymmdd(array_from_hex<7>("20240229235959")), 20240229);
}

}  // namespace
}  // namespace citycard::backend
