#include "citycard/backend/clearing.h"

#include <gtest/gtest.h>

#include "test_city.h"

namespace citycard::backend {
namespace {

using testing::TestCard;
using testing::TestTerminal;

class ClearingTest : public testing::BackendTest {
 protected:
  // Two operators, three routes, three settlement days.
  void SetUp() override {
    BackendTest::SetUp();
    TestCard a = issue(10'000), b = issue(10'000);
    TestTerminal r1 = add_terminal("bus-north", "1"), r2 = add_terminal("bus-north", "2");
    TestTerminal m = add_terminal("metro", "L1");
    upload_ok(make_batch(r1, {purchase(a, r1, 200, now()), purchase(b, r1, 200, now())}));
    upload_ok(make_batch(m, {purchase(a, m, 400, now())}));
    next_day();  // 2024-01-02
    upload_ok(make_batch(r2, {purchase(b, r2, 150, now())}));
    upload_ok(make_batch(m, {purchase(b, m, 600, now()), purchase(a, m, 300, now())}));
    next_day();  // 2024-01-03
    upload_ok(make_batch(r1, {purchase(a, r1, 200, now())}));
  }
  void next_day() { clock.advance_us(86'400'000'000LL); }
  void upload_ok(const citycard::wire::UploadBatch& b) {
    const IngestResult r = backend->upload(b);
    ASSERT_TRUE(r.ok()) << r.message;
    ASSERT_EQ(r.ack.problems_size(), 0);
  }
};

TEST_F(ClearingTest, TotalsPerOperatorAndRouteEqualTheLedgerPayables) {
  auto ops = backend->clearing().by_operator();
  ASSERT_TRUE(ops.is_ok()) << ops.status().to_string();
  ASSERT_EQ(ops->size(), 2u);
  EXPECT_EQ((*ops)[0], (OperatorTotal{"bus-north", 4, 750}));
  EXPECT_EQ((*ops)[1], (OperatorTotal{"metro", 3, 1'300}));
  for (const OperatorTotal& t : *ops) {
    EXPECT_EQ(t.amount_fen, -balance(account::payable(t.operator_id))) << t.operator_id;
  }

  auto routes = backend->clearing().by_route();
  ASSERT_TRUE(routes.is_ok());
  ASSERT_EQ(routes->size(), 3u);
  EXPECT_EQ((*routes)[0], (RouteTotal{"bus-north", "1", 3, 600}));
  EXPECT_EQ((*routes)[1], (RouteTotal{"bus-north", "2", 1, 150}));
  EXPECT_EQ((*routes)[2], (RouteTotal{"metro", "L1", 3, 1'300}));
  // Routes add up to their operator, and so to its payable.
  std::int64_t north = 0;
  for (const RouteTotal& r : *routes) {
    if (r.operator_id == "bus-north") north += r.amount_fen;
  }
  EXPECT_EQ(north, -balance(account::payable("bus-north")));
  EXPECT_TRUE(backend->clearing().reconcile_with_ledger().is_ok());
}

TEST_F(ClearingTest, DateRangesSelectSettlementDays) {
  auto day2 = backend->clearing().by_operator({20240102, 20240102});
  ASSERT_TRUE(day2.is_ok());
  ASSERT_EQ(day2->size(), 2u);
  EXPECT_EQ((*day2)[0], (OperatorTotal{"bus-north", 1, 150}));
  EXPECT_EQ((*day2)[1], (OperatorTotal{"metro", 2, 900}));

  auto from2 = backend->clearing().by_route({20240102, std::nullopt});
  ASSERT_TRUE(from2.is_ok());
  ASSERT_EQ(from2->size(), 3u);
  EXPECT_EQ((*from2)[0], (RouteTotal{"bus-north", "1", 1, 200}));

  auto until1 = backend->clearing().by_operator({std::nullopt, 20240101});
  ASSERT_TRUE(until1.is_ok());
  ASSERT_EQ(until1->size(), 2u);
  EXPECT_EQ((*until1)[0].amount_fen, 400);
  EXPECT_EQ((*until1)[1].amount_fen, 400);

  auto none = backend->clearing().by_operator({20250101, 20251231});
  ASSERT_TRUE(none.is_ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(ClearingTest, ReconciliationNamesAnOperatorWhoseBooksDisagree) {
  // A posting that pays metro without a swipe behind it.
  ASSERT_TRUE(backend->ledger()
                  .post({"adjust", "test", {{"cash:issuer", 5}, {account::payable("metro"), -5}}})
                  .is_ok());
  const Status s = backend->clearing().reconcile_with_ledger();
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("metro"), std::string::npos) << s.message();
  EXPECT_FALSE(backend->check_conservation().is_ok());
  ASSERT_TRUE(backend->ledger()
                  .post({"adjust", "undo", {{"cash:issuer", -5}, {account::payable("metro"), 5}}})
                  .is_ok());
}

}  // namespace
}  // namespace citycard::backend
