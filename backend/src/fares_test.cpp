#include "citycard/backend/fares.h"

#include <gtest/gtest.h>

#include "money_test_util.h"

namespace citycard::backend {
namespace {

namespace wire = citycard::wire;
using protocol::CardType;

wire::FareTable bus_route() {
  wire::FareTable t;
  t.set_table_id("bus-15");
  t.set_kind(static_cast<std::uint32_t>(FareKind::kFlat));
  t.set_flat_fen(200);
  auto* early = t.add_time_bands();  // before 07:00: 20 % off
  early->set_from_minute(0);
  early->set_to_minute(7 * 60);
  early->set_discount_bp(2'000);
  auto* night = t.add_time_bands();  // night bus from 23:00: a flat 300
  night->set_from_minute(23 * 60);
  night->set_to_minute(24 * 60);
  night->set_fare_fen(300);
  t.set_transfer_window_s(90 * 60);
  t.set_transfer_discount_fen(100);
  return t;
}

wire::FareTable metro_line() {
  // Beijing-style bands: 6 km 3 yuan, 12 km 4, 22 km 5, 32 km 6, then +1 yuan per 20 km.
  wire::FareTable t;
  t.set_table_id("metro-1");
  t.set_kind(static_cast<std::uint32_t>(FareKind::kDistance));
  for (auto [m, fen] : {std::pair{6'000, 300}, {12'000, 400}, {22'000, 500}, {32'000, 600}}) {
    auto* b = t.add_bands();
    b->set_up_to_m(m);
    b->set_fare_fen(fen);
  }
  t.set_beyond_step_m(20'000);
  t.set_beyond_step_fen(100);
  for (auto [id, pos] : {std::pair{"A", 0},
                         {"B", 5'999},
                         {"C", 6'001},
                         {"D", 32'000},
                         {"E", 32'001},
                         {"F", 72'001}}) {
    auto* s = t.add_stations();
    s->set_station_id(id);
    s->set_position_m(pos);
  }
  return t;
}

std::vector<wire::CardTypeDiscount> discounts() {
  std::vector<wire::CardTypeDiscount> out(3);
  out[0].set_card_type(static_cast<std::uint32_t>(CardType::kStudent));
  out[0].set_discount_bp(5'000);
  out[1].set_card_type(static_cast<std::uint32_t>(CardType::kElder));
  out[1].set_discount_bp(10'000);
  out[2].set_card_type(static_cast<std::uint32_t>(CardType::kStaff));
  out[2].set_discount_bp(3'333);  // 200 * 0.3333 = 66.66: 67 off, rounded for the rider
  return out;
}

std::int64_t fare(const wire::FareTable& t, Ride r) {
  auto q = quote_fare(t, discounts(), r);
  EXPECT_TRUE(q.is_ok()) << q.status().to_string();
  return q.is_ok() ? q->fare_fen : -1;
}

TEST(FareTest, FlatTimeOfDayCardTypeAndTransfer) {
  const wire::FareTable t = bus_route();
  Ride r;
  r.minute_of_day = 12 * 60;
  EXPECT_EQ(fare(t, r), 200);
  r.minute_of_day = 6 * 60 + 59;
  EXPECT_EQ(fare(t, r), 160);
  r.minute_of_day = 23 * 60 + 30;
  EXPECT_EQ(fare(t, r), 300);
  r.minute_of_day = 12 * 60;
  r.card_type = CardType::kStudent;
  EXPECT_EQ(fare(t, r), 100);
  r.card_type = CardType::kElder;
  EXPECT_EQ(fare(t, r), 0);
  r.card_type = CardType::kStaff;
  EXPECT_EQ(fare(t, r), 133);
  r.card_type = CardType::kAdult;
  r.seconds_since_last_boarding = 90 * 60;
  auto q = quote_fare(t, discounts(), r);
  ASSERT_TRUE(q.is_ok());
  EXPECT_TRUE(q->transfer);
  EXPECT_EQ(q->fare_fen, 100);
  EXPECT_EQ(q->full_fen, 200);
  r.seconds_since_last_boarding = 90 * 60 + 1;
  EXPECT_EQ(fare(t, r), 200) << "outside the window";
  r.card_type = CardType::kStudent;
  r.seconds_since_last_boarding = 60;
  EXPECT_EQ(fare(t, r), 0) << "never below zero";
}

TEST(FareTest, MetroDistanceBandsAndBeyond) {
  const wire::FareTable t = metro_line();
  auto ride = [](const char* a, const char* b) {
    Ride r;
    r.board_station = a;
    r.alight_station = b;
    r.minute_of_day = 600;
    return r;
  };
  EXPECT_EQ(fare(t, ride("A", "B")), 300);
  EXPECT_EQ(fare(t, ride("B", "A")), 300) << "either direction";
  EXPECT_EQ(fare(t, ride("A", "C")), 400);
  EXPECT_EQ(fare(t, ride("A", "D")), 600);
  EXPECT_EQ(fare(t, ride("A", "E")), 700) << "1 m beyond 32 km starts a step";
  EXPECT_EQ(fare(t, ride("A", "F")), 900) << "40,001 m beyond: three steps";
  EXPECT_EQ(fare(t, ride("A", "A")), 300);
  EXPECT_EQ(quote_fare(t, {}, ride("A", "Z")).status().code(), Errc::kNotFound);
}

TEST(FareTest, BadTablesAreRefused) {
  FareOptions o;
  wire::FareTable t = metro_line();
  t.mutable_bands(1)->set_up_to_m(100);
  EXPECT_EQ(validate_fare_table(t, o).code(), Errc::kInvalidArgument);
  t = metro_line();
  t.mutable_stations(1)->set_station_id("A");
  EXPECT_EQ(validate_fare_table(t, o).code(), Errc::kInvalidArgument);
  t = bus_route();
  t.mutable_time_bands(0)->set_to_minute(25 * 60);
  EXPECT_EQ(validate_fare_table(t, o).code(), Errc::kInvalidArgument);
  t = bus_route();
  t.set_flat_fen(-1);
  EXPECT_EQ(validate_fare_table(t, o).code(), Errc::kInvalidArgument);
  EXPECT_TRUE(validate_fare_table(bus_route(), o).is_ok());
}

class ParamsTest : public testing::MoneyTest {};

TEST_F(ParamsTest, TerminalsPullWhatChangedSinceTheirVersionInBoundedPages) {
  options.money.fares.reply_items_max = 2;
  fresh();
  Fares& f = backend->fares();
  EXPECT_EQ(f.publish_fare_table(fin1, bus_route()).status().code(), Errc::kPermissionDenied);
  ASSERT_TRUE(f.publish_fare_table(admin, bus_route()).is_ok());
  ASSERT_TRUE(f.publish_fare_table(admin, metro_line()).is_ok());
  ASSERT_TRUE(f.set_card_type_discount(admin, CardType::kStudent, 5'000).is_ok());
  add_merchant(merchant("shop"));
  ASSERT_TRUE(f.set_merchant_discount(admin, "shop", "food", 1'000).is_ok());
  ASSERT_EQ(*f.version(), 4u);

  // A new terminal: everything, two items a page.
  std::uint64_t v = 0;
  int fares = 0, types = 0, discounts = 0, pages = 0;
  for (bool more = true; more; ++pages) {
    auto p = f.page(v);
    ASSERT_TRUE(p.is_ok());
    EXPECT_LE(p->fares_size() + p->card_type_discounts_size() + p->merchant_discounts_size(), 2);
    fares += p->fares_size();
    types += p->card_type_discounts_size();
    discounts += p->merchant_discounts_size();
    v = p->version();
    more = p->more();
  }
  EXPECT_EQ(fares, 2);
  EXPECT_EQ(types, 1);
  EXPECT_EQ(discounts, 1);
  EXPECT_EQ(v, 4u);
  EXPECT_GE(pages, 2);

  // A fare change and a withdrawal: only those.
  wire::FareTable cheaper = bus_route();
  cheaper.set_flat_fen(150);
  ASSERT_TRUE(f.publish_fare_table(admin, cheaper).is_ok());
  ASSERT_TRUE(f.withdraw_fare_table(admin, "metro-1").is_ok());
  auto delta = f.page(v);
  ASSERT_TRUE(delta.is_ok());
  ASSERT_EQ(delta->fares_size(), 1);
  EXPECT_EQ(delta->fares(0).flat_fen(), 150);
  ASSERT_EQ(delta->removed_size(), 1);
  EXPECT_EQ(delta->removed(0), "fare/metro-1");
  EXPECT_EQ(delta->version(), 6u);
  EXPECT_FALSE(delta->more());
  // Quotes use what is in force.
  Ride r;
  r.minute_of_day = 600;
  r.card_type = CardType::kStudent;
  EXPECT_EQ(f.quote("bus-15", r)->fare_fen, 75);
  EXPECT_EQ(f.quote("metro-1", r).status().code(), Errc::kNotFound);
  // A POS price under the merchant's discounts: by category, else the merchant's default.
  EXPECT_EQ(*f.price("shop", "food", 1'000), 900);
  EXPECT_EQ(*f.price("shop", "books", 1'000), 1'000);
  ASSERT_TRUE(f.set_merchant_discount(admin, "shop", "", 500).is_ok());
  EXPECT_EQ(*f.price("shop", "books", 1'000), 950);
  EXPECT_EQ(*f.price("shop", "food", 1'005), 904) << "100.5 fen of discount rounds up to 101";
}

}  // namespace
}  // namespace citycard::backend
