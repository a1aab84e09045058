#include "citycard/backend/cards.h"

#include <gtest/gtest.h>

#include "citycard/backend/money.h"
#include "money_test_util.h"

namespace citycard::backend {
namespace {

using testing::PurseCard;
using testing::TestTerminal;
using CardsTest = testing::MoneyTest;

TEST_F(CardsTest, NamedAndAnonymousCardsOfEveryTypeAreIssuedWithDepositAndExpiry) {
  IssueRequest r;
  r.card.card_type = protocol::CardType::kStudent;
  r.card.opening_balance_fen = 3'000;
  r.card.deposit_fen = 2'000;
  r.card.valid_to = protocol::date_bcd(2026, 8, 31);
  r.holder = HolderInfo{"Li Lei", "310101200501011234", "13800001111", "li@example.cn", true};
  auto img = backend->cards().issue(fin1, r);
  ASSERT_TRUE(img.is_ok()) << img.status().to_string();
  auto info = backend->cards().info(fin1, img->serial);
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->card.card_type, protocol::CardType::kStudent);
  EXPECT_EQ(info->card.valid_to_yyyymmdd, 20260831);
  EXPECT_EQ(info->card.deposit_fen, 2'000);
  ASSERT_TRUE(info->holder);
  EXPECT_EQ(info->holder->name, "Li Lei");
  EXPECT_EQ(info->holder->id_hash.size(), 64u);
  EXPECT_EQ(info->holder->id_hash.find("310101"), std::string::npos) << "never the number";
  EXPECT_EQ(ledger(account::kDeposits), -2'000);
  EXPECT_EQ(ledger(account::kCardFloat), -3'000);
  // Anonymous elder card.
  PurseCard elder = issue_card(0, 0, false, protocol::CardType::kElder);
  EXPECT_FALSE(backend->cards().info(fin1, elder.serial())->holder);
  // Merchant users do not issue cards.
  MerchantParams shop = merchant("shop");
  add_merchant(shop);
  const Session owner = add_user("owner", Role::kMerchantOwner, "shop");
  EXPECT_EQ(backend->cards().issue(owner, r).status().code(), Errc::kPermissionDenied);
}

TEST_F(CardsTest, CancelIssueReturnsTheMoneyOfAnUnusedCardOnly) {
  PurseCard c = issue_card(1'000, 500);
  const std::int64_t cash = ledger(account::kIssuerCash);
  ASSERT_TRUE(backend->cards().cancel_issue(fin1, c.serial()).is_ok());
  EXPECT_EQ(ledger(account::kIssuerCash), cash - 1'500);
  EXPECT_EQ(card(c.card).status, CardStatus::kCancelled);
  EXPECT_TRUE(*backend->risk().listed(c.serial()));
  // A used card is refunded, not cancelled.
  PurseCard used = issue_card(0);
  counter_load(used, "U-1", 100);
  EXPECT_EQ(backend->cards().cancel_issue(fin1, used.serial()).code(), Errc::kRejected);
}

TEST_F(CardsTest, RefundPaysWhatTheCardHoldsPlusTheDeposit) {
  PurseCard c = issue_card(2'000, 1'000);
  const std::int64_t cash = ledger(account::kIssuerCash);
  // The card says 1,800: 200 of purchases are still on their way from a bus.
  auto r = backend->cards().refund(fin1, c.serial(), 1'800);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->balance_fen, 1'800);
  EXPECT_EQ(r->deposit_fen, 1'000);
  EXPECT_EQ(r->in_flight_fen, 200);
  EXPECT_EQ(ledger(account::kIssuerCash), cash - 2'800);
  EXPECT_EQ(card(c.card).balance_fen, 200) << "waits for the purchases to arrive";
  EXPECT_EQ(card(c.card).status, CardStatus::kRefunded);
  // The late purchase clears against it.
  TestTerminal bus = terminal("desk", "9");
  c.card.balance_fen = 2'000;
  ASSERT_TRUE(backend->upload(make_batch(bus, {purchase(c.card, bus, 200, now())})).ok());
  EXPECT_EQ(card(c.card).balance_fen, 0);
}

TEST_F(CardsTest, RefundOfALostOrCancelledCardIsRefusedAndMovesNothing) {
  PurseCard lost = issue_card(1'000, 500, true);
  ASSERT_TRUE(backend->cards().report_lost(fin1, lost.serial()).is_ok());
  const auto postings = posting_count();
  const std::int64_t cash = ledger(account::kIssuerCash);
  EXPECT_EQ(backend->cards().refund(fin1, lost.serial(), 1'000).status().code(), Errc::kRejected);
  EXPECT_EQ(posting_count(), postings);
  EXPECT_EQ(ledger(account::kIssuerCash), cash);
  EXPECT_EQ(card(lost.card).deposit_fen, 500);
  PurseCard cancelled = issue_card(500);
  ASSERT_TRUE(backend->cards().cancel_issue(fin1, cancelled.serial()).is_ok());
  const auto after_cancel = posting_count();
  EXPECT_EQ(backend->cards().refund(fin1, cancelled.serial(), 0).status().code(), Errc::kRejected);
  EXPECT_EQ(posting_count(), after_cancel);
  // A card claiming more than the backend believes is not paid out.
  PurseCard greedy = issue_card(100);
  EXPECT_EQ(backend->cards().refund(fin1, greedy.serial(), 101).status().code(), Errc::kRejected);
  EXPECT_EQ(card(greedy.card).status, CardStatus::kActive);
  // A card with a pending load must collect or reverse it first.
  OrderRequest o;
  o.order_id = "PEND";
  o.card = greedy.serial();
  o.amount_fen = 50;
  ASSERT_TRUE(backend->recharge().create_order(fin1, o).is_ok());
  EXPECT_EQ(backend->cards().refund(fin1, greedy.serial(), 100).status().code(), Errc::kRejected);
}

TEST_F(CardsTest, ReplaceMovesBalanceDepositPointsAndPendingLoadsToTheNewCard) {
  PurseCard old = issue_card(4'000, 2'000, true);
  OrderRequest o;
  o.order_id = "PEND-1";
  o.card = old.serial();
  o.amount_fen = 700;
  ASSERT_TRUE(backend->recharge().create_order(fin1, o).is_ok());
  ASSERT_TRUE(backend->cards().report_lost(fin1, old.serial()).is_ok());
  const std::int64_t cash = ledger(account::kIssuerCash);
  auto fresh = backend->cards().replace(fin1, old.serial());
  ASSERT_TRUE(fresh.is_ok()) << fresh.status().to_string();
  EXPECT_EQ(fresh->balance_fen, 4'000u) << "written into the new card";
  EXPECT_EQ(ledger(account::kIssuerCash), cash) << "no money in or out";
  auto info = backend->cards().info(fin1, fresh->serial);
  EXPECT_EQ(info->card.balance_fen, 4'000);
  EXPECT_EQ(info->card.deposit_fen, 2'000);
  ASSERT_TRUE(info->holder);
  auto was = backend->cards().info(fin1, old.serial());
  EXPECT_EQ(was->card.status, CardStatus::kReplaced);
  EXPECT_EQ(was->card.balance_fen, 0);
  ASSERT_TRUE(was->replaced_by);
  EXPECT_EQ(*was->replaced_by, fresh->serial);
  EXPECT_TRUE(was->blacklisted);
  auto pending = backend->recharge().pending_loads(fresh->serial);
  ASSERT_TRUE(pending.is_ok());
  ASSERT_EQ(pending->size(), 1u);
  // The new card collects it.
  PurseCard n;
  n.card = testing::TestCard{*fresh, 0, 4'000};
  ASSERT_TRUE(load(n, "PEND-1", 700).is_ok());
  EXPECT_EQ(card(n.card).balance_fen, 4'700);
  // A replaced card is not replaced twice.
  EXPECT_EQ(backend->cards().replace(fin1, old.serial()).status().code(), Errc::kRejected);
}

TEST_F(CardsTest, OnlyNamedCardsAreReportedLostAndFreezingTogglesTheBlacklist) {
  PurseCard anon = issue_card(100);
  EXPECT_EQ(backend->cards().report_lost(fin1, anon.serial()).code(), Errc::kRejected);
  const auto v0 = *backend->risk().blacklist_version();
  ASSERT_TRUE(backend->cards().freeze(fin1, anon.serial(), "dispute").is_ok());
  EXPECT_TRUE(*backend->risk().listed(anon.serial()));
  EXPECT_EQ(backend->cards().freeze(fin1, anon.serial(), "again").code(), Errc::kRejected);
  ASSERT_TRUE(backend->cards().unfreeze(fin1, anon.serial()).is_ok());
  EXPECT_FALSE(*backend->risk().listed(anon.serial()));
  EXPECT_EQ(*backend->risk().blacklist_version(), v0 + 2);
  PurseCard named = issue_card(100, 0, true);
  ASSERT_TRUE(backend->cards().report_lost(fin1, named.serial()).is_ok());
  EXPECT_EQ(card(named.card).status, CardStatus::kLost);
  ASSERT_TRUE(backend->cards().report_found(fin1, named.serial()).is_ok());
  EXPECT_EQ(card(named.card).status, CardStatus::kActive);
  // Every step is in the audit log.
  auto log = backend->users().audit_log(admin, {"fin1", "", "", 20});
  ASSERT_TRUE(log.is_ok());
  int lifecycle = 0;
  for (const AuditEntry& e : *log) {
    lifecycle += e.action == "freeze" || e.action == "unfreeze" || e.action == "report_lost" ||
                 e.action == "report_found";
  }
  EXPECT_EQ(lifecycle, 6) << "4 done, 2 refused";
}

}  // namespace
}  // namespace citycard::backend

namespace citycard::backend {
namespace {

using MoneyConservationTest = testing::MoneyTest;

TEST_F(MoneyConservationTest, EveryMoneyAccountIsCheckedAgainstItsTables) {
  PurseCard c = issue_card(0, 0, true);
  OrderRequest r;
  r.order_id = "CONS-1";
  r.card = c.serial();
  r.amount_fen = 400;
  ASSERT_TRUE(backend->recharge().create_order(fin1, r).is_ok());
  ASSERT_TRUE(backend->check_conservation().is_ok());
  // Each tampering is named, with its difference; each undoing makes the books whole again.
  struct Tamper {
    const char* sql;
    const char* undo;
    const char* account;
  };
  const Tamper cases[] = {
      {"UPDATE recharge_orders SET amount_fen = amount_fen + 3",
       "UPDATE recharge_orders SET amount_fen = amount_fen - 3", "pending_loads"},
      {"UPDATE holders SET account_fen = account_fen + 5",
       "UPDATE holders SET account_fen = account_fen - 5", "online_accounts"},
      {"UPDATE merchants SET quota_fen = quota_fen + 7",
       "UPDATE merchants SET quota_fen = quota_fen - 7", "recharge_quota"},
      {"UPDATE card_ext SET points = points + 11", "UPDATE card_ext SET points = points - 11",
       "points_liability"},
  };
  for (const Tamper& t : cases) {
    ASSERT_TRUE(backend->store().exec(t.sql).is_ok());
    const Status s = backend->check_conservation();
    EXPECT_FALSE(s.is_ok()) << t.account;
    EXPECT_NE(s.message().find(t.account), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("difference"), std::string::npos) << s.message();
    ASSERT_TRUE(backend->store().exec(t.undo).is_ok());
    EXPECT_TRUE(backend->check_conservation().is_ok()) << t.account;
  }
}

}  // namespace
}  // namespace citycard::backend
