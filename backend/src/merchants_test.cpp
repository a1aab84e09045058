#include "citycard/backend/merchants.h"

#include <gtest/gtest.h>

#include "citycard/backend/money.h"
#include "money_test_util.h"

namespace citycard::backend {
namespace {

using testing::PurseCard;
using testing::TestTerminal;

class PointsTest : public testing::MoneyTest {
 protected:
  void SetUp() override {
    MoneyTest::SetUp();
    MerchantParams cafe = merchant("cafe");
    cafe.points_coefficient_milli = 2'000;  // two points per yuan
    add_merchant(cafe);
    MerchantParams books = merchant("books");
    books.points_coefficient_milli = 1'000;
    books.points_funding = PointsFunding::kPrepaid;
    add_merchant(books);
    cafe_pos = terminal("cafe");
    books_pos = terminal("books");
  }
  TestTerminal cafe_pos, books_pos;
};

TEST_F(PointsTest, PurchasesEarnPointsByCoefficientAndLevel) {
  ASSERT_TRUE(backend->merchants()
                  .set_card_levels(admin, {{0, "normal", 0, 100}, {1, "silver", 10'000, 150}})
                  .is_ok());
  PurseCard c = issue_card(50'000, 0, true);
  ASSERT_TRUE(
      backend->upload(make_batch(cafe_pos, {purchase(c.card, cafe_pos, 5'050, now())})).ok());
  auto p = backend->merchants().points(c.serial());
  ASSERT_TRUE(p.is_ok());
  EXPECT_EQ(p->points, 101) << "50.50 yuan at two points a yuan";
  EXPECT_EQ(p->level, 0);
  ASSERT_TRUE(
      backend->upload(make_batch(cafe_pos, {purchase(c.card, cafe_pos, 5'000, now())})).ok());
  EXPECT_EQ(backend->merchants().points(c.serial())->points, 201);
  EXPECT_EQ(backend->merchants().points(c.serial())->level, 1) << "100.50 yuan spent";
  ASSERT_TRUE(
      backend->upload(make_batch(cafe_pos, {purchase(c.card, cafe_pos, 1'000, now())})).ok());
  EXPECT_EQ(backend->merchants().points(c.serial())->points, 231) << "silver earns 1.5 times";
  EXPECT_EQ(ledger(account::kPointsLiability), -231 * kPointValueFen);
  EXPECT_EQ(ledger(account::kPointsReceivable), 231 * kPointValueFen) << "post-paid: cafe owes";
}

TEST_F(PointsTest, PrepaidPointsComeOutOfTheMerchantsStockThenPostPaid) {
  EXPECT_EQ(backend->merchants().buy_points(admin, "cafe", 100).code(), Errc::kRejected)
      << "cafe is post-paid";
  ASSERT_TRUE(backend->merchants().buy_points(fin1, "books", 30).is_ok());
  EXPECT_EQ(ledger(account::kPointsPrepaid), -30);
  PurseCard c = issue_card(10'000);
  ASSERT_TRUE(
      backend->upload(make_batch(books_pos, {purchase(c.card, books_pos, 5'000, now())})).ok());
  EXPECT_EQ(backend->merchants().points(c.serial())->points, 50);
  EXPECT_EQ(backend->merchants().get(admin, "books")->points_stock, 0);
  EXPECT_EQ(ledger(account::kPointsPrepaid), 0);
  EXPECT_EQ(ledger(account::kPointsReceivable), 20) << "the 20 beyond the stock";
}

TEST_F(PointsTest, RedemptionForGiftsOrIntoTheCard) {
  PurseCard c = issue_card(50'000);
  ASSERT_TRUE(
      backend->upload(make_batch(cafe_pos, {purchase(c.card, cafe_pos, 10'000, now())})).ok());
  ASSERT_EQ(backend->merchants().points(c.serial())->points, 200);
  const Session cashier = add_user("cashier", Role::kMerchantOperator, "cafe");
  auto left = backend->merchants().redeem_for_gift(cashier, "cafe", c.serial(), 120);
  ASSERT_TRUE(left.is_ok()) << left.status().to_string();
  EXPECT_EQ(*left, 80);
  EXPECT_EQ(ledger(account::kPointsRedeemedDue), -120) << "owed to the cafe for the gift";
  EXPECT_EQ(backend->merchants().redeem_for_gift(cashier, "cafe", c.serial(), 81).status().code(),
            Errc::kInsufficientFunds);
  EXPECT_EQ(backend->merchants().redeem_for_gift(cashier, "books", c.serial(), 1).status().code(),
            Errc::kPermissionDenied);
  // Into the card as a pending load.
  auto o = backend->recharge().redeem_points(cashier, "cafe", "PTS-1", c.serial(), 80);
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->channel, Channel::kPoints);
  EXPECT_EQ(ledger(account::kPointsLiability), 0);
  c.card.balance_fen = 40'000;
  ASSERT_TRUE(load(c, "PTS-1", 80).is_ok());
  EXPECT_EQ(card(c.card).balance_fen, 40'080);
  // Points orders are not refunded in money.
  EXPECT_EQ(backend->recharge().reverse(fin1, "PTS-1", "no").status().code(), Errc::kRejected);
}

TEST_F(PointsTest, MerchantsAreValidatedAndDeployersMustExist) {
  MerchantParams bad = merchant("x");
  bad.txn_fee_bp = 10'001;
  EXPECT_EQ(backend->merchants().create(admin, bad).code(), Errc::kInvalidArgument);
  bad = merchant("x");
  bad.deployer_id = "nobody";
  bad.deployer_share_bp = 100;
  EXPECT_EQ(backend->merchants().create(admin, bad).code(), Errc::kNotFound);
  bad = merchant("x,y");
  EXPECT_EQ(backend->merchants().create(admin, bad).code(), Errc::kInvalidArgument)
      << "it would break the bank file";
  EXPECT_EQ(backend->merchants().create(admin, merchant("cafe")).code(), Errc::kDuplicate);
  TerminalParams t;
  t.operator_id = "unknown";
  EXPECT_EQ(backend->merchants().register_terminal(admin, t).status().code(), Errc::kNotFound);
}

}  // namespace
}  // namespace citycard::backend
