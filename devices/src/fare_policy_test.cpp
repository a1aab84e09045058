#include "citycard/devices/fare_policy.h"

#include <gtest/gtest.h>

namespace citycard::devices {
namespace {

using protocol::CardType;

constexpr std::int64_t kDay = 86'400;
// Day 100 since 2000-01-01 at hh:mm.
std::int64_t at(int hh, int mm) {
  return 100 * kDay + hh * 3600 + mm * 60;
}

TEST(FarePolicy, HalfAFenOfDiscountRoundsInTheRidersFavour) {
  EXPECT_EQ(apply_discount_bp(200, 5000), 100u);
  EXPECT_EQ(apply_discount_bp(199, 5000), 99u);  // 99.5 off -> 100 off (rider's favour)
  EXPECT_EQ(apply_discount_bp(3, 3333), 2u);     // 0.9999 off -> 1 off
  EXPECT_EQ(apply_discount_bp(3, 1666), 3u);     // 0.4998 off -> 0 off
  EXPECT_EQ(apply_discount_bp(250, 10'000), 0u);
  EXPECT_EQ(apply_discount_bp(250, 20'000), 0u);                       // clamped, never negative
  EXPECT_EQ(apply_discount_bp(UINT32_MAX, 1), UINT32_MAX - 429'497u);  // 429496.73 -> 429497
}

TEST(FarePolicy, FlatFareIsTheSameForEveryone) {
  FarePolicy p;
  p.flat_fen = 200;
  const Fare f = quote(p, FareContext{CardType::kAdult, at(8, 0), 17, std::nullopt});
  EXPECT_EQ(f.full_fen, 200u);
  EXPECT_EQ(f.charged_fen, 200u);
  EXPECT_FALSE(f.transfer);
}

DistanceTable beijing_like() {
  // Beijing metro 2014: 3 yuan to 6 km, 4 to 12, 5 to 22, 6 to 32, then +1 per 20 km.
  return DistanceTable{{{6000, 300}, {12000, 400}, {22000, 500}, {32000, 600}}, 20000, 100, 0};
}

TEST(FarePolicy, DistanceBandsAreInclusiveAndSteppedBeyondTheLastBand) {
  const DistanceTable t = beijing_like();
  EXPECT_EQ(t.fare_fen(0), 300u);
  EXPECT_EQ(t.fare_fen(6000), 300u);
  EXPECT_EQ(t.fare_fen(6001), 400u);
  EXPECT_EQ(t.fare_fen(32000), 600u);
  EXPECT_EQ(t.fare_fen(32001), 700u);  // a started step counts
  EXPECT_EQ(t.fare_fen(52000), 700u);
  EXPECT_EQ(t.fare_fen(52001), 800u);
  DistanceTable capped = t;
  capped.max_fen = 750;
  EXPECT_EQ(capped.fare_fen(200'000), 750u);
  DistanceTable no_step = t;
  no_step.beyond_step = 0;
  EXPECT_EQ(no_step.fare_fen(999'999), 600u);
}

TEST(FarePolicy, DistanceByStopCount) {
  FarePolicy p;
  p.base = FarePolicy::Base::kDistance;
  p.distance = DistanceTable{{{5, 100}, {10, 200}}, 5, 50, 0};
  EXPECT_EQ(quote(p, {CardType::kAdult, at(9, 0), 5, {}}).charged_fen, 100u);
  EXPECT_EQ(quote(p, {CardType::kAdult, at(9, 0), 6, {}}).charged_fen, 200u);
  EXPECT_EQ(quote(p, {CardType::kAdult, at(9, 0), 11, {}}).charged_fen, 250u);
}

TEST(FarePolicy, TimeOfDayReplacesOrDiscountsAndMayWrapMidnight) {
  FarePolicy p;
  p.flat_fen = 200;
  p.time_of_day = {{7 * 60, 9 * 60, 300, 0},     // morning peak: 3 yuan
                   {22 * 60, 5 * 60, 0, 5000}};  // night, wraps midnight: half
  EXPECT_EQ(quote(p, {CardType::kAdult, at(6, 59), 0, {}}).charged_fen, 200u);
  EXPECT_EQ(quote(p, {CardType::kAdult, at(7, 0), 0, {}}).charged_fen, 300u);
  EXPECT_EQ(quote(p, {CardType::kAdult, at(8, 59), 0, {}}).full_fen, 300u);
  EXPECT_EQ(quote(p, {CardType::kAdult, at(9, 0), 0, {}}).charged_fen, 200u);  // exclusive end
  EXPECT_EQ(quote(p, {CardType::kAdult, at(23, 30), 0, {}}).charged_fen, 100u);
  EXPECT_EQ(quote(p, {CardType::kAdult, at(0, 10), 0, {}}).charged_fen, 100u);
  EXPECT_EQ(quote(p, {CardType::kAdult, at(5, 0), 0, {}}).charged_fen, 200u);
}

TEST(FarePolicy, TransferWithinTheWindowOnlyAndNotFromTheFuture) {
  FarePolicy p;
  p.flat_fen = 200;
  p.transfer.window_s = 90 * 60;
  p.transfer.discount_fen = 100;
  const std::int64_t now = at(10, 0);
  Fare f = quote(p, {CardType::kAdult, now, 0, now - 90 * 60});
  EXPECT_TRUE(f.transfer);
  EXPECT_EQ(f.charged_fen, 100u);
  EXPECT_EQ(f.full_fen, 200u);
  f = quote(p, {CardType::kAdult, now, 0, now - 90 * 60 - 1});
  EXPECT_FALSE(f.transfer);
  EXPECT_EQ(f.charged_fen, 200u);
  f = quote(p, {CardType::kAdult, now, 0, now + 60});  // a record from a clock ahead of ours
  EXPECT_FALSE(f.transfer);
  p.transfer.discount_fen = 500;  // never below zero
  EXPECT_EQ(quote(p, {CardType::kAdult, now, 0, now - 60}).charged_fen, 0u);
  p.transfer.fixed_fare_fen = 50;
  EXPECT_EQ(quote(p, {CardType::kAdult, now, 0, now - 60}).charged_fen, 50u);
  p.transfer.window_s = 0;  // transfers off
  EXPECT_FALSE(quote(p, {CardType::kAdult, now, 0, now - 60}).transfer);
}

TEST(FarePolicy, CardTypeDiscountComesBeforeTheTransferAndRoundsInTheRidersFavour) {
  FarePolicy p;
  p.flat_fen = 250;
  p.card_type_discount_bp = {0, 5000, 10'000, 2000};  // adult, student half, elder free, staff
  EXPECT_EQ(quote(p, {CardType::kAdult, at(9, 0), 0, {}}).charged_fen, 250u);
  EXPECT_EQ(quote(p, {CardType::kStudent, at(9, 0), 0, {}}).charged_fen, 125u);
  EXPECT_EQ(quote(p, {CardType::kElder, at(9, 0), 0, {}}).charged_fen, 0u);
  EXPECT_EQ(quote(p, {CardType::kStaff, at(9, 0), 0, {}}).charged_fen, 200u);
  // Student transfer: half of 250 = 125, then 100 off = 25 (transfer first would give 75).
  // The full fare stays the adult one.
  p.transfer = {3600, 100, std::nullopt};
  const Fare f = quote(p, {CardType::kStudent, at(9, 0), 0, at(8, 30)});
  EXPECT_EQ(f.charged_fen, 25u);
  EXPECT_EQ(f.full_fen, 250u);
  // Odd fen: 251 half -> 125.5 off rounds up to 126 off -> pays 125.
  p.flat_fen = 251;
  EXPECT_EQ(quote(p, {CardType::kStudent, at(9, 0), 0, {}}).charged_fen, 125u);
}

TEST(FarePolicy, MinuteOfDay) {
  EXPECT_EQ(minute_of_day(at(0, 0)), 0u);
  EXPECT_EQ(minute_of_day(at(23, 59) + 59), 23u * 60 + 59);
  EXPECT_EQ(minute_of_day(-60), 23u * 60 + 59);  // before the epoch still maps into a day
}

TEST(FarePolicy, FromADownloadedFareTable) {
  citycard::wire::ParamsReply reply;
  citycard::wire::FareTable* t = reply.add_fares();
  t->set_table_id("L1");
  t->set_kind(1);
  for (auto [m, fen] : {std::pair{6000u, 300}, {12000u, 400}}) {
    auto* b = t->add_bands();
    b->set_up_to_m(m);
    b->set_fare_fen(fen);
  }
  t->set_beyond_step_m(10000);
  t->set_beyond_step_fen(100);
  t->set_max_fare_fen(600);
  auto* tb = t->add_time_bands();
  tb->set_from_minute(22 * 60);
  tb->set_to_minute(24 * 60);
  tb->set_discount_bp(2000);
  t->set_transfer_window_s(3600);
  t->set_transfer_discount_fen(50);
  auto* d = reply.add_card_type_discounts();
  d->set_card_type(1);
  d->set_discount_bp(5000);

  Result<FarePolicy> p = fare_policy_from_wire(*t, reply.card_type_discounts());
  ASSERT_TRUE(p.is_ok()) << p.status().message();
  EXPECT_EQ(quote(*p, {CardType::kAdult, at(9, 0), 12001, {}}).charged_fen, 500u);
  EXPECT_EQ(quote(*p, {CardType::kAdult, at(9, 0), 99'000, {}}).charged_fen, 600u);  // cap
  EXPECT_EQ(quote(*p, {CardType::kAdult, at(23, 0), 100, {}}).charged_fen, 240u);
  // Student transfer: 300 half = 150, then 50 off = 100.
  EXPECT_EQ(quote(*p, {CardType::kStudent, at(9, 0), 100, at(8, 30)}).charged_fen, 100u);

  t->mutable_bands(1)->set_up_to_m(5000);
  EXPECT_EQ(fare_policy_from_wire(*t, reply.card_type_discounts()).status().code(),
            Errc::kMalformed);
  t->mutable_bands(1)->set_up_to_m(12000);
  t->set_flat_fen(-1);
  t->set_kind(0);
  EXPECT_EQ(fare_policy_from_wire(*t, reply.card_type_discounts()).status().code(),
            Errc::kMalformed);
  t->set_kind(7);
  EXPECT_EQ(fare_policy_from_wire(*t, reply.card_type_discounts()).status().code(),
            Errc::kMalformed);
}

}  // namespace
}  // namespace citycard::devices
