#include "citycard/scenarios/world.h"

#include <gtest/gtest.h>

namespace citycard::scenarios {
namespace {

CityConfig small_city() {
  CityConfig c;
  EXPECT_TRUE(parse_calendar("2026-11-23 07:00", c.start_epoch2000_s));
  c.cards = 200;
  c.routes = 2;
  c.buses_per_route = 2;
  c.balance_fen_min = 100;
  c.balance_fen_max = 2000;
  c.upload_interval_us = 30'000'000;
  return c;
}

struct CityRun {
  std::unique_ptr<reports::TraceWriter> trace = std::move(reports::TraceWriter::open("").value());
  World world;
  explicit CityRun(std::uint64_t seed) : world(seed, *trace, ":memory:") {}
};

TEST(World, SwipesFlowFromCardsToTheBackendAndMoneyIsConserved) {
  CityRun r(3);
  ASSERT_TRUE(r.world.build(small_city()).is_ok());
  ASSERT_TRUE(r.world.add_phase(0, 1800'000'000, 2000).is_ok());
  ASSERT_TRUE(r.world.run_until(1800'000'000).is_ok());
  ASSERT_TRUE(r.world.drain(3600'000'000).is_ok());
  const WorldStats s = r.world.stats();
  EXPECT_GT(s.swipes, 500u);
  EXPECT_EQ(s.queued_records, 0u);
  EXPECT_EQ(s.uploaded_records, s.swipes);
  EXPECT_EQ(s.backend_amount_fen, s.validator_amount_fen);
  EXPECT_EQ(s.validator_amount_fen, static_cast<std::int64_t>(s.swipes) * 200);
  EXPECT_EQ(s.refusals, s.refusals_insufficient);  // low balances run out, nothing else
  EXPECT_TRUE(r.world.conservation().is_ok()) << r.world.conservation().message();
}

TEST(World, SameSeedSameTraceDifferentSeedDifferentTrace) {
  auto digest = [](std::uint64_t seed) {
    CityRun r(seed);
    EXPECT_TRUE(r.world.build(small_city()).is_ok());
    EXPECT_TRUE(r.world.add_phase(0, 600'000'000, 3000).is_ok());
    EXPECT_TRUE(r.world.run_until(600'000'000).is_ok());
    EXPECT_TRUE(r.world.drain(3600'000'000).is_ok());
    return r.trace->digest_hex();
  };
  const std::string a = digest(11);
  EXPECT_EQ(a, digest(11));
  EXPECT_NE(a, digest(12));
}

TEST(World, LossyNetworkStillDeliversEverythingExactlyOnce) {
  CityRun r(5);
  CityConfig c = small_city();
  c.network.loss_probability = 0.3;  // requests and replies lost: re-sends must be harmless
  c.network.timeout_us = 2'000'000;
  ASSERT_TRUE(r.world.build(c).is_ok());
  ASSERT_TRUE(r.world.add_phase(0, 900'000'000, 2000).is_ok());
  ASSERT_TRUE(r.world.run_until(900'000'000).is_ok());
  ASSERT_TRUE(r.world.drain(6 * 3600'000'000LL).is_ok());
  const WorldStats s = r.world.stats();
  EXPECT_GT(s.network_lost, 0u);
  EXPECT_GT(s.upload_failures, 0u);
  EXPECT_EQ(s.backend_amount_fen, s.validator_amount_fen);
  EXPECT_TRUE(r.world.conservation().is_ok());
}

TEST(World, BadConfigurationIsRefusedWithAReason) {
  CityRun r(1);
  CityConfig c = small_city();
  c.cards = 0;
  Status s = r.world.build(c);
  EXPECT_EQ(s.code(), Errc::kInvalidArgument);
  EXPECT_NE(s.message().find("cards.count"), std::string::npos);
  EXPECT_FALSE(r.world.add_phase(0, 10, 1).is_ok());  // no city yet
  ASSERT_TRUE(r.world.build(small_city()).is_ok());
  EXPECT_FALSE(r.world.build(small_city()).is_ok());  // only once
  EXPECT_FALSE(r.world.add_phase(10, 5, 100).is_ok());
  EXPECT_FALSE(r.world.add_phase(0, 10, -1).is_ok());
}

TEST(WorldTimes, ParsesCalendarAndTimeOfDay) {
  std::int64_t s = 0;
  ASSERT_TRUE(parse_calendar("2000-01-02 00:00", s));
  EXPECT_EQ(s, 86400);
  EXPECT_TRUE(parse_calendar("2026-11-23 07:00:30", s));
  EXPECT_FALSE(parse_calendar("2026-02-30 07:00", s));
  EXPECT_FALSE(parse_calendar("2026-11-23", s));
  EXPECT_FALSE(parse_calendar("2026-11-23 07:00 extra", s));
  ASSERT_TRUE(parse_time_of_day("07:30", s));
  EXPECT_EQ(s, 27000);
  EXPECT_FALSE(parse_time_of_day("7h30", s));
  EXPECT_FALSE(parse_time_of_day("07:61", s));
}

}  // namespace
}  // namespace citycard::scenarios
