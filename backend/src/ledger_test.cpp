#include "citycard/backend/ledger.h"

#include <gtest/gtest.h>

#include <limits>

#include "schema.h"
#include "test_city.h"

namespace citycard::backend {
namespace {

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Store::open(":memory:");
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store = std::move(s).value();
    ASSERT_TRUE(store->migrate(schema::migrations()).is_ok());
    ledger = std::make_unique<Ledger>(*store, calendar);
    for (const char* a : {"cash:issuer", "card_float", "payable:bus1", "fee_income"}) {
      ASSERT_TRUE(ledger->open_account(a).is_ok());
    }
  }
  void TearDown() override {
    const Status s = ledger->verify();
    EXPECT_TRUE(s.is_ok()) << s.to_string();
  }

  std::int64_t bal(const char* a) { return *ledger->balance(a); }
  std::int64_t postings() { return *ledger->posting_count(); }

  testing::FixedClock clock;
  Calendar calendar{clock};
  std::unique_ptr<Store> store;
  std::unique_ptr<Ledger> ledger;
};

TEST_F(LedgerTest, BalancedPostingMovesMoneyAndTheTrialBalanceIsZero) {
  auto id = ledger->post({"issue", "card 1", {{"cash:issuer", 5000}, {"card_float", -5000}}});
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  auto id2 = ledger->post({"swipe", "card 1#0", {{"card_float", 200}, {"payable:bus1", -200}}});
  ASSERT_TRUE(id2.is_ok());
  EXPECT_GT(*id2, *id);
  EXPECT_EQ(bal("cash:issuer"), 5000);
  EXPECT_EQ(bal("card_float"), -4800);
  EXPECT_EQ(bal("payable:bus1"), -200);
  auto tb = ledger->trial_balance();
  ASSERT_TRUE(tb.is_ok());
  EXPECT_TRUE(tb->balanced());
  EXPECT_EQ(tb->accounts.size(), 4u);
  EXPECT_EQ(postings(), 2);
}

TEST_F(LedgerTest, UnbalancedPostingIsRefusedAndWritesNothing) {
  ASSERT_TRUE(ledger->post({"issue", "x", {{"cash:issuer", 100}, {"card_float", -100}}}).is_ok());
  auto r = ledger->post({"swipe", "y", {{"card_float", 200}, {"payable:bus1", -199}}});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::kInvalidArgument);
  EXPECT_NE(r.status().message().find("does not balance"), std::string::npos);
  EXPECT_EQ(bal("card_float"), -100);
  EXPECT_EQ(bal("payable:bus1"), 0);
  EXPECT_EQ(postings(), 1);
  auto q = store->query("SELECT count(*) FROM entries");
  ASSERT_TRUE(*q.step());
  EXPECT_EQ(q.column_int64(0), 2);
}

TEST_F(LedgerTest, RefusesDegeneratePostings) {
  EXPECT_FALSE(ledger->post({"k", "r", {}}).is_ok());
  EXPECT_FALSE(ledger->post({"k", "r", {{"cash:issuer", 0}, {"card_float", 0}}}).is_ok());
  EXPECT_FALSE(ledger->post({"", "r", {{"cash:issuer", 1}, {"card_float", -1}}}).is_ok());
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  EXPECT_FALSE(
      ledger->post({"k", "r", {{"cash:issuer", kMax}, {"cash:issuer", 1}, {"card_float", -1}}})
          .is_ok());
  std::vector<Entry> many(kMaxEntriesPerPosting + 1, Entry{"cash:issuer", 1});
  many.back() = {"card_float", -static_cast<std::int64_t>(kMaxEntriesPerPosting)};
  EXPECT_FALSE(ledger->post({"k", "r", many}).is_ok());
  EXPECT_EQ(postings(), 0);
}

TEST_F(LedgerTest, UnknownAccountIsRefusedAndWritesNothing) {
  auto r = ledger->post({"swipe", "r", {{"card_float", 10}, {"payable:nobody", -10}}});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::kNotFound);
  EXPECT_EQ(bal("card_float"), 0);
  EXPECT_EQ(postings(), 0);
  EXPECT_EQ(ledger->balance("payable:nobody").status().code(), Errc::kNotFound);
}

TEST_F(LedgerTest, BalanceOverflowIsRefused) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  ASSERT_TRUE(ledger->post({"k", "1", {{"cash:issuer", kMax}, {"card_float", -kMax}}}).is_ok());
  auto r = ledger->post({"k", "2", {{"cash:issuer", 1}, {"card_float", -1}}});
  EXPECT_FALSE(r.is_ok());
  EXPECT_EQ(bal("cash:issuer"), kMax);
  EXPECT_EQ(postings(), 1);
}

TEST_F(LedgerTest, PostingInsideACallersTransactionGoesWithIt) {
  {
    auto txn = store->begin();
    ASSERT_TRUE(ledger->post({"k", "r", {{"cash:issuer", 10}, {"card_float", -10}}}).is_ok());
    EXPECT_EQ(bal("card_float"), -10);  // visible inside
  }                                     // rolled back
  EXPECT_EQ(bal("card_float"), 0);
  EXPECT_EQ(postings(), 0);
  {
    auto txn = store->begin();
    ASSERT_TRUE(ledger->post({"k", "r", {{"cash:issuer", 10}, {"card_float", -10}}}).is_ok());
    // A refused posting inside the batch leaves the earlier one alone.
    ASSERT_FALSE(ledger->post({"k", "bad", {{"cash:issuer", 10}, {"card_float", -9}}}).is_ok());
    ASSERT_TRUE(txn->commit().is_ok());
  }
  EXPECT_EQ(bal("card_float"), -10);
  EXPECT_EQ(postings(), 1);
}

TEST_F(LedgerTest, PostingsCarryKindReferenceAndClockTime) {
  clock.advance_us(1'234'567);
  auto id = ledger->post({"swipe", "0102#3", {{"card_float", 5}, {"payable:bus1", -5}}});
  ASSERT_TRUE(id.is_ok());
  auto q = store->query("SELECT kind, reference, at_us FROM postings WHERE id = ?1");
  q.bind(1, *id);
  ASSERT_TRUE(*q.step());
  EXPECT_EQ(q.column_text(0), "swipe");
  EXPECT_EQ(q.column_text(1), "0102#3");
  EXPECT_EQ(q.column_int64(2), 1'234'567);
}

TEST_F(LedgerTest, VerifyCatchesABalanceThatDisagreesWithItsEntries) {
  ASSERT_TRUE(ledger->post({"k", "r", {{"cash:issuer", 10}, {"card_float", -10}}}).is_ok());
  ASSERT_TRUE(store
                  ->exec("UPDATE accounts SET balance_fen = balance_fen + 1 "
                         "WHERE name = 'cash:issuer'")
                  .is_ok());
  const Status s = ledger->verify();
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("cash:issuer"), std::string::npos) << s.message();
  ASSERT_TRUE(store
                  ->exec("UPDATE accounts SET balance_fen = balance_fen - 1 "
                         "WHERE name = 'cash:issuer'")
                  .is_ok());
}

TEST_F(LedgerTest, BalancesByPrefixTreatWildcardsLiterally) {
  ASSERT_TRUE(ledger->open_account("payable:a%b").is_ok());
  ASSERT_TRUE(ledger->open_account("payable_x").is_ok());
  auto b = ledger->balances("payable:");
  ASSERT_TRUE(b.is_ok());
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ((*b)[0].account, "payable:a%b");
  EXPECT_EQ((*b)[1].account, "payable:bus1");
  EXPECT_TRUE(ledger->open_account("payable:bus1").is_ok());  // idempotent
  EXPECT_FALSE(ledger->open_account("").is_ok());
}

}  // namespace
}  // namespace citycard::backend
