#include "citycard/backend/report_data.h"

#include <gtest/gtest.h>

#include "money_test_util.h"

namespace citycard::backend {
namespace {

using testing::PurseCard;
using testing::TestTerminal;

class ReportDataTest : public testing::MoneyTest {
 protected:
  void SetUp() override {
    MoneyTest::SetUp();
    MerchantParams shop = merchant("shop");
    shop.recharge_enabled = true;
    add_merchant(shop);
    add_merchant(merchant("bus", MerchantKind::kTransit));
    ASSERT_TRUE(backend->merchants().top_up_quota(fin1, "shop", 100'000).is_ok());
    pos = terminal("shop");
    bus15 = terminal("bus", "15");
    bus16 = terminal("bus", "16");
    a = issue_card(20'000, 1'000, true, protocol::CardType::kStudent);
    b = issue_card(20'000);
    // Day 1: 2024-01-01.
    ok(make_batch(pos, {purchase(a.card, pos, 1'000, now()), purchase(b.card, pos, 500, now())}));
    ok(make_batch(bus15,
                  {purchase(a.card, bus15, 100, now()), purchase(b.card, bus15, 200, now())}));
    next_day();
    // Day 2: a forged record, a POS recharge, a failed bank order.
    auto forged = purchase(b.card, bus16, 200, now());
    forged.set_amount_fen(1);
    ok(make_batch(bus16, {purchase(a.card, bus16, 200, now()), forged}));
    OrderRequest r;
    r.order_id = "POS-1";
    r.channel = Channel::kMerchantPos;
    r.merchant_id = "shop";
    r.card = b.serial();
    r.amount_fen = 3'000;
    ASSERT_TRUE(backend->recharge().create_order(admin, r).is_ok());
    b.card.balance_fen -= 200;  // the forged purchase happened on the card
    ASSERT_TRUE(load(b, "POS-1", 3'000).is_ok());
    ASSERT_TRUE(backend->recharge()
                    .authorize_load("t", b.init("POS-1", 3'000, load_terminal))
                    .status()
                    .code() == Errc::kRejected);
  }
  void ok(const citycard::wire::UploadBatch& batch) { ASSERT_TRUE(backend->upload(batch).ok()); }
  TestTerminal pos, bus15, bus16;
  PurseCard a, b;
};

TEST_F(ReportDataTest, IssuanceByTypeNamedStatusAndDay) {
  auto s = backend->reports().issuance(fin1, {}, ReportPeriod::kDay);
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ(s->cards, 2);
  EXPECT_EQ(s->named, 1);
  EXPECT_EQ(s->anonymous, 1);
  EXPECT_EQ(s->by_type[static_cast<int>(protocol::CardType::kStudent)], 1);
  EXPECT_EQ(s->by_status["active"], 2);
  EXPECT_EQ(s->deposit_fen, 1'000);
  ASSERT_EQ(s->issued.size(), 1u);
  EXPECT_EQ(s->issued[0], std::make_pair(20240101, std::int64_t{2}));
  auto month = backend->reports().issuance(fin1, {}, ReportPeriod::kMonth);
  EXPECT_EQ(month->issued[0].first, 202401);
}

TEST_F(ReportDataTest, MerchantAndTerminalSummariesByDayAndMonth) {
  auto days = backend->reports().merchants(fin1, "", {}, ReportPeriod::kDay);
  ASSERT_TRUE(days.is_ok());
  ASSERT_EQ(days->size(), 4u);
  EXPECT_EQ((*days)[0], (MerchantSummary{"bus", 20240101, 2, 300, 0, 0}));
  EXPECT_EQ((*days)[1], (MerchantSummary{"bus", 20240102, 1, 200, 0, 0}));
  EXPECT_EQ((*days)[2], (MerchantSummary{"shop", 20240101, 2, 1'500, 0, 0}));
  EXPECT_EQ((*days)[3], (MerchantSummary{"shop", 20240102, 0, 0, 1, 3'000}));
  auto month =
      backend->reports().merchants(fin1, "shop", {20240101, 20240131}, ReportPeriod::kMonth);
  ASSERT_TRUE(month.is_ok());
  ASSERT_EQ(month->size(), 1u);
  EXPECT_EQ((*month)[0], (MerchantSummary{"shop", 202401, 2, 1'500, 1, 3'000}));
  auto terms = backend->reports().terminals(fin1, "bus", {}, ReportPeriod::kDay);
  ASSERT_TRUE(terms.is_ok());
  ASSERT_EQ(terms->size(), 2u);
  EXPECT_EQ((*terms)[1].rejected, 1);
  EXPECT_EQ((*terms)[1].purchase_fen, 200);
  const Session owner = add_user("owner", Role::kMerchantOwner, "shop");
  EXPECT_TRUE(backend->reports().merchants(owner, "shop", {}, ReportPeriod::kDay).is_ok());
  EXPECT_EQ(backend->reports().merchants(owner, "bus", {}, ReportPeriod::kDay).status().code(),
            Errc::kPermissionDenied);
  EXPECT_EQ(backend->reports().merchants(owner, "", {}, ReportPeriod::kDay).status().code(),
            Errc::kPermissionDenied);
}

TEST_F(ReportDataTest, CountsFailureRatesAndTransitFigures) {
  auto t = backend->reports().transactions(fin1, {});
  ASSERT_TRUE(t.is_ok());
  EXPECT_EQ(t->purchases, 5);
  EXPECT_EQ(t->purchase_fen, 2'000);
  EXPECT_EQ(t->rejected_records, 1);
  EXPECT_EQ(t->recharges["merchant_pos"], std::make_pair(std::int64_t{1}, std::int64_t{3'000}));
  EXPECT_EQ(t->orders_by_state["loaded"], 1);
  auto f = backend->reports().failures(fin1, {});
  ASSERT_TRUE(f.is_ok());
  EXPECT_EQ(f->records, 6);
  EXPECT_EQ(f->records_refused, 1);
  EXPECT_EQ(f->refused_ppm, 166'666);
  EXPECT_EQ(f->refused_by_code["BAD_TAC"], 1);
  EXPECT_EQ(f->load_attempts, 3);
  EXPECT_EQ(f->load_failures, 1);
  EXPECT_EQ(f->load_failure_ppm, 333'333);
  auto routes = backend->reports().transit(fin1, ClearingDimension::kRoute, "bus", {});
  ASSERT_TRUE(routes.is_ok());
  ASSERT_EQ(routes->size(), 2u);
  EXPECT_EQ((*routes)[0].key, "15");
  EXPECT_EQ((*routes)[0].count, 2);
  EXPECT_EQ((*routes)[1].key, "16");
  auto drivers = backend->reports().transit(fin1, ClearingDimension::kDriver, "bus", {});
  ASSERT_EQ(drivers->size(), 1u);
  EXPECT_EQ((*drivers)[0].key, "driver-7");
  EXPECT_EQ((*drivers)[0].amount_fen, 500);
  auto vehicles =
      backend->reports().transit(fin1, ClearingDimension::kVehicle, "", {20240102, 20240102});
  ASSERT_EQ(vehicles->size(), 1u);
  EXPECT_EQ((*vehicles)[0].key, "V-16");
  EXPECT_EQ(backend->reports()
                .transactions(add_user("op", Role::kMerchantOwner, "shop"), {})
                .status()
                .code(),
            Errc::kPermissionDenied);
}

}  // namespace
}  // namespace citycard::backend
