#include "citycard/scenarios/world.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

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

// Group commit in the embedded backend: the same city with every request committed on its own
// and with requests grouped per virtual second clears the same sales to the fen; the grouped
// run commits far fewer times than it answers.
TEST(WorldGroupCommit, GroupedCommitsClearTheSameSalesWithFewerCommits) {
  auto run = [](std::int64_t interval_us) {
    CityRun r(21);
    CityConfig c = small_city();
    c.commit_interval_us = interval_us;
    EXPECT_TRUE(r.world.build(c).is_ok());
    EXPECT_TRUE(r.world.add_phase(0, 1800'000'000, 2000).is_ok());
    EXPECT_TRUE(r.world.run_until(1800'000'000).is_ok());
    EXPECT_TRUE(r.world.drain(3600'000'000).is_ok());
    EXPECT_TRUE(r.world.conservation().is_ok()) << r.world.conservation().message();
    return r.world.stats();
  };
  const WorldStats alone = run(0), grouped = run(1'000'000);
  EXPECT_EQ(alone.commit_groups, 0u);
  EXPECT_GT(grouped.commit_groups, 0u);
  EXPECT_GT(grouped.grouped_requests, grouped.commit_groups);  // some groups hold several
  EXPECT_EQ(grouped.swipes, alone.swipes);
  EXPECT_EQ(grouped.uploaded_records, grouped.swipes);
  EXPECT_EQ(grouped.backend_amount_fen, alone.backend_amount_fen);
  EXPECT_EQ(grouped.validator_amount_fen, alone.validator_amount_fen);
}

// A crash while a group is open loses only what was never answered: the buses kept those
// records, re-send them after the restart, and nothing acknowledged is missing from the file.
TEST(WorldGroupCommit, ACrashLosesTheOpenGroupButNoAcknowledgedRecord) {
  const std::string db =
      (std::filesystem::path(::testing::TempDir()) / "world_group_commit_crash.db").string();
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(db + s);
  auto trace = std::move(reports::TraceWriter::open("").value());
  World world(22, *trace, db);
  CityConfig c = small_city();
  c.upload_interval_us = 5'000'000;  // busy links: the crashes find a group open
  c.commit_interval_us = 2'000'000;  // below the terminals' 5 s timeout
  ASSERT_TRUE(world.build(c).is_ok());
  ASSERT_TRUE(world.add_phase(0, 1800'000'000, 4000).is_ok());
  for (std::int64_t at : {300'000'000LL, 700'000'000LL, 1'100'000'000LL}) {
    ASSERT_TRUE(world.crash_backend(at + 5'000'000, 20'000'000).is_ok());
  }
  ASSERT_TRUE(world.run_until(1800'000'000).is_ok());
  Status drained = world.drain(6 * 3600'000'000LL);
  ASSERT_TRUE(drained.is_ok()) << drained.message();
  const WorldStats s = world.stats();
  EXPECT_EQ(s.backend_crashes, 3u);
  EXPECT_GT(s.groups_lost, 0u);
  EXPECT_EQ(s.uploaded_records, s.swipes);  // each sale counted once, none lost
  EXPECT_EQ(s.backend_amount_fen, s.validator_amount_fen);
  EXPECT_TRUE(world.conservation().is_ok()) << world.conservation().message();
}

TEST(WorldGroupCommit, BadCommitIntervalIsRefused) {
  for (std::int64_t bad : {std::int64_t{-1}, std::int64_t{5'000'000}}) {
    CityRun r(23);
    CityConfig c = small_city();
    c.commit_interval_us = bad;  // negative, or as long as the terminals' timeout (5 s)
    Status s = r.world.build(c);
    EXPECT_EQ(s.code(), Errc::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("commit_interval_ms"), std::string::npos) << s.message();
  }
  CityRun r(24);
  ASSERT_TRUE(r.world.build(small_city()).is_ok());  // 1 s groups
  FaultConfig f;
  f.network = small_city().network;
  f.network.timeout_us = 1'000'000;  // a faults{} timeout no answer could meet
  Status s = r.world.set_faults(f);
  EXPECT_EQ(s.code(), Errc::kInvalidArgument);
  EXPECT_NE(s.message().find("commit_interval_ms"), std::string::npos) << s.message();
  f.network.timeout_us = 1'500'000;
  EXPECT_TRUE(r.world.set_faults(f).is_ok());
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

TEST(WorldCardTypes, TheMixIssuesEachTypeAndEachPaysItsDiscountedFare) {
  CityRun r(21);
  CityConfig c = small_city();
  c.cards = 400;
  c.balance_fen_min = 5000;  // nobody runs out: every tap is a sale
  c.balance_fen_max = 5000;
  c.fare_fen = 205;  // odd, so the rounding of each discount shows
  c.card_mix = {0.5, 0.3, 0.2, 0.0};
  c.card_discount_bp = {0, 5000, 7500, 0};
  ASSERT_TRUE(r.world.build(c).is_ok());
  WorldStats s = r.world.stats();
  EXPECT_EQ(s.cards_by_type[0] + s.cards_by_type[1] + s.cards_by_type[2], 400u);
  EXPECT_EQ(s.cards_by_type[3], 0u);  // a zero share issues none
  // 400 draws at 50/30/20 %: each well inside +-10 points of its share.
  EXPECT_GT(s.cards_by_type[0], 160u);
  EXPECT_LT(s.cards_by_type[0], 240u);
  EXPECT_GT(s.cards_by_type[1], 80u);
  EXPECT_LT(s.cards_by_type[1], 160u);
  EXPECT_GT(s.cards_by_type[2], 40u);
  EXPECT_LT(s.cards_by_type[2], 120u);

  // A tap by hand per type: full fare, half (102.5 -> 103 off, 102 charged), a quarter
  // (153.75 -> 154 off, 51 charged): half a fen of discount rounds in the rider's favour
  // (fare_policy.h, the backend's rule too).
  const std::int64_t want[3] = {205, 102, 51};
  bool seen[3] = {false, false, false};
  for (std::size_t i = 0; i < r.world.card_count(); ++i) {
    const auto t = static_cast<std::size_t>(r.world.card_type(i));
    if (seen[t]) continue;
    seen[t] = true;
    auto tap = r.world.tap_card(i, "R1-B1");
    ASSERT_TRUE(tap.is_ok());
    EXPECT_TRUE(tap->ok) << tap->reason;
    EXPECT_EQ(tap->amount_fen, want[t]) << "card type " << t;
  }
  ASSERT_TRUE(seen[0] && seen[1] && seen[2]);
  // The discount is per sale: the bus still shows its full fare.
  EXPECT_EQ(r.world.buses()[0].fare_fen, 205);

  ASSERT_TRUE(r.world.add_phase(0, 1200'000'000, 3000).is_ok());
  ASSERT_TRUE(r.world.run_until(1200'000'000).is_ok());
  ASSERT_TRUE(r.world.drain(3600'000'000).is_ok());
  s = r.world.stats();
  EXPECT_EQ(s.refusals, 0u);
  for (std::size_t t = 0; t < 3; ++t) {
    EXPECT_GT(s.swipes_by_type[t], 0u) << t;
    EXPECT_EQ(s.amount_fen_by_type[t], static_cast<std::int64_t>(s.swipes_by_type[t]) * want[t])
        << "card type " << t;
  }
  EXPECT_EQ(s.swipes_by_type[0] + s.swipes_by_type[1] + s.swipes_by_type[2], s.swipes);
  // The backend cleared exactly what the validators charged, discounts included.
  EXPECT_EQ(s.uploaded_records, s.swipes);
  EXPECT_EQ(s.backend_amount_fen, s.validator_amount_fen);
  EXPECT_LT(s.validator_amount_fen, static_cast<std::int64_t>(s.swipes) * 205);
  EXPECT_EQ(r.world.check_cards().off, 0u) << r.world.check_cards().first_problem;
  EXPECT_TRUE(r.world.conservation().is_ok()) << r.world.conservation().message();
}

TEST(WorldCardTypes, BadMixOrDiscountIsRefusedWithAReason) {
  auto refused = [](CityConfig c, const char* what) {
    CityRun r(1);
    Status s = r.world.build(c);
    EXPECT_EQ(s.code(), Errc::kInvalidArgument) << what;
    EXPECT_NE(s.message().find(what), std::string::npos) << s.message();
    EXPECT_FALSE(r.world.built());
  };
  CityConfig c = small_city();
  c.card_mix = {0, 0, 0, 0};
  refused(c, "cards.mix");
  c.card_mix = {1, -0.5, 0, 0};
  refused(c, "cards.mix");
  c.card_mix = {1, 0, 0, 0};
  c.card_discount_bp = {0, 10'000, 0, 0};  // a free ride would be a 0-fen sale
  refused(c, "cards.discount_bp");
  c.card_discount_bp = {-1, 0, 0, 0};
  refused(c, "cards.discount_bp");
}

CityConfig taxi_city() {
  CityConfig c = small_city();
  c.balance_fen_min = 20'000;  // taxi fares are large: nobody runs out
  c.balance_fen_max = 20'000;
  c.taxis = 4;
  return c;
}

TEST(WorldTaxis, TaxiFaresAreMeteredChargedUploadedAndCleared) {
  CityRun r(41);
  ASSERT_TRUE(r.world.build(taxi_city()).is_ok());
  ASSERT_TRUE(r.world.add_phase(0, 1800'000'000, 600).is_ok());
  ASSERT_TRUE(r.world.add_taxi_trips(0, 1800'000'000, 240).is_ok());
  ASSERT_TRUE(r.world.run_until(1800'000'000).is_ok());
  ASSERT_TRUE(r.world.drain(3600'000'000).is_ok());
  const WorldStats s = r.world.stats();
  EXPECT_GT(s.taxi_trips, 60u);
  EXPECT_EQ(s.taxi_refusals, 0u);
  // Flag fall is 14 yuan: every trip costs at least that.
  EXPECT_GE(s.taxi_amount_fen, static_cast<std::int64_t>(s.taxi_trips) * 1400);
  EXPECT_EQ(s.queued_records, 0u);
  EXPECT_EQ(s.uploaded_records, s.swipes + s.taxi_trips);
  EXPECT_EQ(s.backend_amount_fen, s.validator_amount_fen + s.taxi_amount_fen);
  EXPECT_EQ(r.world.check_cards().off, 0u) << r.world.check_cards().first_problem;
  EXPECT_TRUE(r.world.conservation().is_ok()) << r.world.conservation().message();
}

// Taxis cut off from the backend queue their sales; one loses power with records queued.
// With its durable log it powers up with the same queue and, once the link is back, uploads
// them all; with the `taxi_log_in_ram` defect the records are gone and the backend is short.
WorldStats power_loss_run(bool defect, std::size_t* before, std::size_t* after) {
  CityRun r(43);
  if (defect) {
    EXPECT_TRUE(r.world.set_defects({"taxi_log_in_ram"}).is_ok());
  }
  EXPECT_TRUE(r.world.build(taxi_city()).is_ok());
  EXPECT_TRUE(r.world.add_outage("T", 0, 1500'000'000).is_ok());
  EXPECT_TRUE(r.world.add_taxi_trips(0, 1200'000'000, 300).is_ok());
  EXPECT_TRUE(
      r.world.at(1300'000'000 - 1, [&] { *before = r.world.taxi_queue_length(0); }).is_ok());
  EXPECT_TRUE(r.world.power_loss("T1", 1300'000'000).is_ok());
  EXPECT_TRUE(r.world.at(1300'000'000 + 1, [&] { *after = r.world.taxi_queue_length(0); }).is_ok());
  EXPECT_TRUE(r.world.run_until(1800'000'000).is_ok());
  EXPECT_TRUE(r.world.drain(3600'000'000).is_ok());
  EXPECT_TRUE(r.world.conservation().is_ok()) << r.world.conservation().message();
  return r.world.stats();
}

TEST(WorldTaxis, PowerLossKeepsEveryQueuedRecordAndTheDefectLosesThem) {
  std::size_t before = 0, after = 0;
  const WorldStats s = power_loss_run(false, &before, &after);
  EXPECT_EQ(s.power_losses, 1u);
  EXPECT_GT(before, 0u);  // the taxi held records when the power went
  EXPECT_EQ(after, before);
  EXPECT_GT(s.upload_failures, 0u);
  EXPECT_EQ(s.queued_records, 0u);
  EXPECT_EQ(s.uploaded_records, s.taxi_trips);
  EXPECT_EQ(s.backend_amount_fen, s.taxi_amount_fen);

  std::size_t lost_before = 0, lost_after = 0;
  const WorldStats d = power_loss_run(true, &lost_before, &lost_after);
  EXPECT_GT(lost_before, 0u);
  EXPECT_EQ(lost_after, 0u);
  EXPECT_EQ(d.uploaded_records + lost_before, d.taxi_trips);
  EXPECT_LT(d.backend_amount_fen, d.taxi_amount_fen);
}

TEST(WorldTaxis, BadTaxiArgumentsAreRefusedWithAReason) {
  CityRun r(1);
  CityConfig c = taxi_city();
  c.taxis = -1;
  EXPECT_NE(r.world.build(c).message().find("taxis.count"), std::string::npos);
  CityRun n(1);
  ASSERT_TRUE(n.world.build(small_city()).is_ok());  // no taxis
  EXPECT_NE(n.world.add_taxi_trips(0, 10, 5).message().find("taxis"), std::string::npos);
  CityRun t(1);
  ASSERT_TRUE(t.world.build(taxi_city()).is_ok());
  EXPECT_FALSE(t.world.add_taxi_trips(10, 5, 100).is_ok());
  EXPECT_FALSE(t.world.add_taxi_trips(0, 10, 0).is_ok());
  Status s = t.world.power_loss("T9", 10);
  EXPECT_EQ(s.code(), Errc::kInvalidArgument);
  EXPECT_NE(s.message().find("no taxi 'T9'"), std::string::npos) << s.message();
}

std::size_t buses_at_version(const World& w, std::uint64_t v) {
  std::size_t n = 0;
  for (const auto& b : w.buses()) n += b.blacklist_version >= v ? 1 : 0;
  return n;
}

TEST(WorldOperator, BlacklistReachesEveryBusOverItsLinkAndTheCardIsLocked) {
  CityRun r(4);
  ASSERT_TRUE(r.world.build(small_city()).is_ok());
  auto v = r.world.blacklist_card(2, true);
  ASSERT_TRUE(v.is_ok()) << v.status().message();
  EXPECT_EQ(r.world.blacklist_version(), *v);
  // No bus has talked to the backend yet: the card still rides.
  EXPECT_EQ(buses_at_version(r.world, *v), 0u);
  auto before = r.world.tap_card(2, "R1-B1");
  ASSERT_TRUE(before.is_ok());
  EXPECT_TRUE(before->ok);
  // Every bus polls within one upload interval (30 s) and pulls the delta.
  ASSERT_TRUE(r.world.run_until(31'000'000).is_ok());
  EXPECT_EQ(buses_at_version(r.world, *v), 4u);
  EXPECT_GT(r.world.stats().syncs, 0u);
  auto listed = r.world.tap_card(2, "R2-B2");
  ASSERT_TRUE(listed.is_ok());
  EXPECT_FALSE(listed->ok);
  EXPECT_EQ(listed->reason, "blacklisted");
  // The blacklist lock worked (the PSAM holds the maintenance key): the card is now blocked.
  auto again = r.world.tap_card(2, "R1-B2");
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->reason, "card_blocked");
  EXPECT_EQ(r.world.stats().refusals_blacklisted, 1u);
  // Unlisting is a new version that reaches the buses too.
  auto v2 = r.world.blacklist_card(2, false);
  ASSERT_TRUE(v2.is_ok());
  EXPECT_GT(*v2, *v);
  ASSERT_TRUE(r.world.run_until(62'000'000).is_ok());
  for (const auto& b : r.world.buses()) EXPECT_EQ(b.blacklist_size, 0u) << b.vehicle;
  ASSERT_TRUE(r.world.drain(600'000'000).is_ok());
  EXPECT_TRUE(r.world.conservation().is_ok());
}

TEST(WorldOperator, AnOutageHoldsTheBlacklistBackUntilTheLinkReturns) {
  CityRun r(6);
  ASSERT_TRUE(r.world.build(small_city()).is_ok());
  ASSERT_TRUE(r.world.add_outage("R1", 0, 600'000'000).is_ok());
  auto v = r.world.blacklist_card(10, true);
  ASSERT_TRUE(v.is_ok());
  ASSERT_TRUE(r.world.run_until(300'000'000).is_ok());
  for (const auto& b : r.world.buses()) {
    EXPECT_EQ(b.blacklist_version >= *v, b.route == "R2") << b.vehicle;
  }
  EXPECT_GT(r.world.stats().sync_failures, 0u);
  ASSERT_TRUE(r.world.run_until(631'000'000).is_ok());
  EXPECT_EQ(buses_at_version(r.world, *v), 4u);
}

TEST(WorldOperator, StaleBlacklistDefectKeepsBusesOnTheOldList) {
  CityRun r(6);
  ASSERT_TRUE(r.world.set_defects({"stale_blacklist"}).is_ok());
  ASSERT_TRUE(r.world.build(small_city()).is_ok());
  ASSERT_TRUE(r.world.blacklist_card(10, true).is_ok());
  ASSERT_TRUE(r.world.run_until(120'000'000).is_ok());
  EXPECT_EQ(buses_at_version(r.world, 1), 0u);
  EXPECT_GT(r.world.stats().syncs, 0u);  // they asked and were answered
}

TEST(WorldOperator, FareTableReachesTheRoutesBusesAndIsCharged) {
  CityRun r(8);
  CityConfig c = small_city();
  c.balance_fen_min = 5000;
  c.balance_fen_max = 5000;
  ASSERT_TRUE(r.world.build(c).is_ok());
  auto v = r.world.publish_flat_fare("R1", 250);
  ASSERT_TRUE(v.is_ok()) << v.status().message();
  ASSERT_TRUE(r.world.run_until(31'000'000).is_ok());
  for (const auto& b : r.world.buses()) {
    EXPECT_EQ(b.fare_fen, b.route == "R1" ? 250 : 200) << b.vehicle;
    EXPECT_GE(b.params_version, *v) << b.vehicle;
  }
  auto t = r.world.tap_card(0, "R1-B2");
  ASSERT_TRUE(t.is_ok());
  EXPECT_TRUE(t->ok);
  EXPECT_EQ(t->amount_fen, 250);
  ASSERT_TRUE(r.world.drain(600'000'000).is_ok());
  EXPECT_EQ(r.world.stats().backend_amount_fen, 250);
  EXPECT_TRUE(r.world.conservation().is_ok());
}

TEST(WorldOperator, BadOperatorActionsAreRefusedWithAReasonAndChangeNothing) {
  CityRun r(9);
  EXPECT_EQ(r.world.blacklist_card(0, true).status().code(), Errc::kInvalidArgument);  // no city
  ASSERT_TRUE(r.world.build(small_city()).is_ok());
  auto no_card = r.world.blacklist_card(200, true);
  EXPECT_EQ(no_card.status().code(), Errc::kInvalidArgument);
  EXPECT_NE(no_card.status().message().find("1..200"), std::string::npos);
  auto no_route = r.world.publish_flat_fare("R9", 300);
  EXPECT_EQ(no_route.status().code(), Errc::kInvalidArgument);
  EXPECT_NE(no_route.status().message().find("R9"), std::string::npos);
  EXPECT_FALSE(r.world.tap_card(0, "R7-B1").is_ok());
  EXPECT_EQ(r.world.blacklist_version(), 0u);
  ASSERT_TRUE(r.world.crash_backend(1'000'000, 60'000'000).is_ok());
  ASSERT_TRUE(r.world.run_until(2'000'000).is_ok());
  EXPECT_EQ(r.world.blacklist_card(1, true).status().code(), Errc::kUnavailable);
  EXPECT_EQ(r.world.publish_flat_fare("R1", 300).status().code(), Errc::kUnavailable);
  ASSERT_TRUE(r.world.run_until(70'000'000).is_ok());
  EXPECT_TRUE(r.world.blacklist_card(1, true).is_ok());  // up again
}

TEST(WorldOperator, SettlementPaysYesterdaysClearingOnceAndTheBankConfirmsIt) {
  CityRun r(10);
  ASSERT_TRUE(r.world.build(small_city()).is_ok());
  EXPECT_EQ(r.world.settle(-1).status().code(), Errc::kInvalidArgument);
  ASSERT_TRUE(r.world.add_phase(0, 3600'000'000, 1000).is_ok());
  const std::int64_t next_day_1am = (24 - 7 + 1) * 3600'000'000LL;  // the city starts at 07:00
  ASSERT_TRUE(r.world.run_until(next_day_1am).is_ok());
  const std::int64_t cleared = r.world.stats().backend_amount_fen;
  ASSERT_GT(cleared, 0);
  auto s = r.world.settle(20);
  ASSERT_TRUE(s.is_ok()) << s.status().message();
  EXPECT_NE(s->batch_id, 0);
  EXPECT_EQ(s->gross_fen, cleared);
  EXPECT_EQ(s->fee_fen, (cleared * 20 + 5000) / 10000);
  EXPECT_EQ(s->net_fen + s->fee_fen, s->gross_fen);
  EXPECT_EQ(s->confirmed_fen, s->net_fen);
  EXPECT_EQ(s->differences, 0u);
  EXPECT_EQ(s->settled_through, 20261123);
  // Nothing more is due: no second payment.
  auto again = r.world.settle(20);
  ASSERT_TRUE(again.is_ok()) << again.status().message();
  EXPECT_EQ(again->batch_id, 0);
  EXPECT_EQ(again->gross_fen, 0);
  EXPECT_TRUE(r.world.conservation().is_ok()) << r.world.conservation().message();
}

// Sweeps the tear over every exchange of a bus purchase, after the command (its answer lost):
// whichever exchange it hits, the rider's re-tap 2 s later leaves the card charged exactly
// once, with one record, cleared once.
TEST(WorldFaults, ATearAtAnyApduIsMadeGoodByTheRetapAndNobodyPaysTwice) {
  std::size_t torn_runs = 0, recovered_runs = 0;
  for (std::int64_t apdu = 0; apdu < 16; ++apdu) {
    CityRun r(12);
    CityConfig c = small_city();
    c.balance_fen_min = 5000;
    c.balance_fen_max = 5000;
    ASSERT_TRUE(r.world.build(c).is_ok());
    FaultConfig f;
    f.network = c.network;
    f.tear_tap = 1;
    f.tear_apdu = apdu;
    f.tear_when = devices::TearingLink::When::kAfterCommand;
    ASSERT_TRUE(r.world.set_faults(f).is_ok());
    auto first = r.world.tap_card(4, "R1-B1");
    ASSERT_TRUE(first.is_ok());
    if (!first->ok) {
      EXPECT_EQ(first->reason, "torn") << "apdu " << apdu;
      ++torn_runs;
    }
    ASSERT_TRUE(r.world.run_until(10'000'000).is_ok());
    const WorldStats s = r.world.stats();
    recovered_runs += s.recovered;
    EXPECT_EQ(s.swipes, 1u) << "apdu " << apdu;
    const CardCheck k = r.world.check_cards();
    EXPECT_EQ(k.off, 0u) << "apdu " << apdu << ": " << k.first_problem;
    EXPECT_EQ(k.opening_fen - k.balance_fen, 200) << "apdu " << apdu;  // charged once
    ASSERT_TRUE(r.world.drain(600'000'000).is_ok());
    EXPECT_EQ(r.world.stats().backend_amount_fen, 200) << "apdu " << apdu;
  }
  EXPECT_GE(torn_runs, 4u);       // the tear hit the purchase's exchanges
  EXPECT_GE(recovered_runs, 1u);  // at least one after the DEBIT: completed from the proof
}

TEST(WorldOperator, AReplacedCardCarriesTheBalanceAndTheOldOneIsBlacklisted) {
  CityRun r(13);
  CityConfig c = small_city();
  c.balance_fen_min = 3000;
  c.balance_fen_max = 3000;
  ASSERT_TRUE(r.world.build(c).is_ok());
  const std::string old_serial = r.world.card_serial_hex(5);
  ASSERT_TRUE(r.world.tap_card(5, "R1-B1")->ok);  // 200 fen, cleared at the next upload
  ASSERT_TRUE(r.world.drain(600'000'000).is_ok());
  auto fresh = r.world.replace_card(5);
  ASSERT_TRUE(fresh.is_ok()) << fresh.status().message();
  EXPECT_NE(*fresh, old_serial);
  EXPECT_EQ(r.world.card_serial_hex(5), *fresh);
  EXPECT_GT(r.world.blacklist_version(), 0u);  // the old card went on the blacklist
  auto t = r.world.tap_card(5, "R2-B1");
  ASSERT_TRUE(t.is_ok());
  EXPECT_TRUE(t->ok) << t->reason;
  const CardCheck k = r.world.check_cards();
  EXPECT_EQ(k.off, 0u) << k.first_problem;
  EXPECT_EQ(r.world.stats().replacements, 1u);
  ASSERT_TRUE(r.world.drain(600'000'000).is_ok());
  EXPECT_TRUE(r.world.conservation().is_ok()) << r.world.conservation().message();
  EXPECT_EQ(r.world.replace_card(500).status().code(), Errc::kInvalidArgument);
}

TEST(WorldFaults, BadTearKnobIsRefused) {
  CityRun r(1);
  ASSERT_TRUE(r.world.build(small_city()).is_ok());
  FaultConfig f;
  f.tear_probability = 0.9;
  Status s = r.world.set_faults(f);
  EXPECT_EQ(s.code(), Errc::kInvalidArgument);
  EXPECT_NE(s.message().find("tear"), std::string::npos);
}

// ---- terminal certificates: revoke, recommission --------------------------------------------

CityConfig pki_city() {
  CityConfig c = small_city();
  c.certificates = true;
  return c;
}

BusView bus_view(const World& w, const std::string& vehicle) {
  for (const auto& b : w.buses()) {
    if (b.vehicle == vehicle) return b;
  }
  ADD_FAILURE() << "no bus " << vehicle;
  return {};
}

struct RevocationRun {
  WorldStats at_revoked_end;     // just before the recommission
  std::size_t held = 0;          // records the revoked bus kept then
  std::string last_failure;
  CertificateView revoked_cert;  // the CA's and OpenSSL's view of it then
  CertificateView other_cert;
  WorldStats end;
  Status conservation;
};

// Sales for 30 minutes; R1-B1 revoked at 5 minutes, commissioned again at 25; then drained.
RevocationRun revocation_run(const std::vector<std::string>& defects) {
  RevocationRun out;
  CityRun r(8);
  EXPECT_TRUE(r.world.set_defects(defects).is_ok());
  EXPECT_TRUE(r.world.build(pki_city()).is_ok());
  EXPECT_TRUE(r.world.add_phase(0, 1800'000'000, 3000).is_ok());
  EXPECT_TRUE(r.world.run_until(300'000'000).is_ok());
  EXPECT_TRUE(r.world.certificate("R1-B1")->verifies);
  EXPECT_TRUE(r.world.revoke("R1-B1", backend::RevocationReason::kKeyCompromise).is_ok());
  EXPECT_TRUE(r.world.run_until(1500'000'000).is_ok());
  out.at_revoked_end = r.world.stats();
  out.held = bus_view(r.world, "R1-B1").queued_records;
  out.last_failure = bus_view(r.world, "R1-B1").last_failure;
  out.revoked_cert = r.world.certificate("R1-B1").value();
  out.other_cert = r.world.certificate("R2-B2").value();
  EXPECT_TRUE(r.world.recommission("R1-B1").is_ok());
  EXPECT_TRUE(r.world.certificate("R1-B1")->verifies);
  EXPECT_TRUE(r.world.run_until(1800'000'000).is_ok());
  EXPECT_TRUE(r.world.drain(3600'000'000).is_ok());
  out.end = r.world.stats();
  out.conservation = r.world.conservation();
  return out;
}

TEST(WorldCertificates, ARevokedTerminalIsRefusedKeepsItsRecordsAndNewKeysClearThem) {
  const RevocationRun run = revocation_run({});
  // 20 minutes at one upload poll every 30 s: every one refused, and the blacklist pulls too.
  EXPECT_GE(run.at_revoked_end.refused_uploads, 30u);
  EXPECT_GT(run.at_revoked_end.refused_requests, run.at_revoked_end.refused_uploads);
  EXPECT_EQ(run.at_revoked_end.revocations, 1u);
  EXPECT_GT(run.held, 50u);  // 20 minutes of sales, kept on the bus
  EXPECT_NE(run.last_failure.find("UNAUTHENTICATED"), std::string::npos) << run.last_failure;
  EXPECT_NE(run.last_failure.find("certificate of terminal R1-B1"), std::string::npos)
      << run.last_failure;
  EXPECT_NE(run.last_failure.find("has been revoked"), std::string::npos);
  // The CA and OpenSSL (the CRL) agree; another terminal is untouched.
  EXPECT_TRUE(run.revoked_cert.revoked);
  EXPECT_FALSE(run.revoked_cert.verifies);
  EXPECT_NE(run.revoked_cert.why.find("revoked"), std::string::npos) << run.revoked_cert.why;
  EXPECT_EQ(run.revoked_cert.subject_id.size(), 12u);
  EXPECT_TRUE(run.other_cert.verifies) << run.other_cert.why;
  // What the bus kept was not cleared while it was refused...
  EXPECT_EQ(run.at_revoked_end.backend_amount_fen +
                static_cast<std::int64_t>(run.at_revoked_end.queued_records) * 200,
            run.at_revoked_end.validator_amount_fen);
  // ...and is, once the bus has new keys: nothing lost, nothing twice.
  EXPECT_EQ(run.end.recommissions, 1u);
  EXPECT_EQ(run.end.queued_records, 0u);
  EXPECT_EQ(run.end.uploaded_records, run.end.swipes);
  EXPECT_EQ(run.end.backend_amount_fen, run.end.validator_amount_fen);
  EXPECT_TRUE(run.conservation.is_ok()) << run.conservation.message();
}

TEST(WorldCertificates, IgnoreRevocationDefectServesTheRevokedTerminal) {
  const RevocationRun run = revocation_run({"ignore_revocation"});
  EXPECT_FALSE(run.revoked_cert.verifies);            // the CRL says revoked...
  EXPECT_EQ(run.at_revoked_end.refused_uploads, 0u);  // ...and the backend serves it anyway
  EXPECT_LT(run.held, 50u);
  EXPECT_EQ(run.last_failure, "");
}

TEST(WorldCertificates, ARevocationSurvivesABackendCrashAndRestart) {
  const std::string db = ::testing::TempDir() + "world_revocation_crash.db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());
  auto trace = std::move(reports::TraceWriter::open("").value());
  World w(10, *trace, db);
  ASSERT_TRUE(w.build(pki_city()).is_ok());
  ASSERT_TRUE(w.add_phase(0, 1200'000'000, 3000).is_ok());
  ASSERT_TRUE(w.revoke("R2-B1", backend::RevocationReason::kKeyCompromise).is_ok());
  ASSERT_TRUE(w.crash_backend(120'000'000, 60'000'000).is_ok());
  ASSERT_TRUE(w.run_until(1200'000'000).is_ok());
  const WorldStats s = w.stats();
  EXPECT_EQ(s.backend_crashes, 1u);
  EXPECT_TRUE(w.backend_up());
  // Refused after the restart too: the CA reloaded the revocation from the database.
  EXPECT_NE(bus_view(w, "R2-B1").last_failure.find("has been revoked"), std::string::npos)
      << bus_view(w, "R2-B1").last_failure;
  EXPECT_EQ(bus_view(w, "R1-B1").last_failure, "");
  EXPECT_TRUE(w.certificate("R2-B1")->revoked);
  EXPECT_GE(s.refused_uploads, 30u);
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());
}

TEST(WorldCertificates, BadCertificateActionsAreRefusedWithAReason) {
  CityRun plain(1);
  ASSERT_TRUE(plain.world.build(small_city()).is_ok());
  Status s = plain.world.revoke("R1-B1", backend::RevocationReason::kKeyCompromise);
  EXPECT_EQ(s.code(), Errc::kInvalidArgument);
  EXPECT_NE(s.message().find("certificates = true"), std::string::npos) << s.message();
  EXPECT_FALSE(plain.world.certificate("R1-B1").is_ok());
  EXPECT_EQ(plain.world.stats().refused_requests, 0u);

  CityRun r(1);
  ASSERT_TRUE(r.world.build(pki_city()).is_ok());
  s = r.world.revoke("R9-B9", backend::RevocationReason::kKeyCompromise);
  EXPECT_EQ(s.code(), Errc::kNotFound);
  EXPECT_NE(s.message().find("no terminal 'R9-B9'"), std::string::npos) << s.message();
  EXPECT_EQ(r.world.recommission("nope").code(), Errc::kNotFound);
  EXPECT_EQ(r.world.stats().revocations, 0u);
  ASSERT_TRUE(r.world.crash_backend(0, 600'000'000).is_ok());
  ASSERT_TRUE(r.world.run_until(1'000'000).is_ok());
  EXPECT_EQ(r.world.revoke("R1-B1", backend::RevocationReason::kKeyCompromise).code(),
            Errc::kUnavailable);
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
