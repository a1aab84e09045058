#include "citycard/backend/risk.h"

#include <gtest/gtest.h>

#include <set>

#include "citycard/backend/money.h"
#include "money_test_util.h"

namespace citycard::backend {
namespace {

using protocol::Serial8;
using testing::PurseCard;
using testing::TestTerminal;

class RiskTest : public testing::MoneyTest {
 protected:
  Serial8 serial(int n) {
    Serial8 s{};
    s[6] = static_cast<std::uint8_t>(n >> 8);
    s[7] = static_cast<std::uint8_t>(n);
    return s;
  }
  // Applies pages the way a terminal does, from `since`, until no more.
  std::set<Serial8> pull(std::set<Serial8> have, std::uint64_t& version, int& pages) {
    bool full = false;
    for (pages = 0; pages < 1'000; ++pages) {
      auto p = backend->risk().page(version, full);
      EXPECT_TRUE(p.is_ok());
      if (p->reset) have.clear();
      for (const Serial8& s : p->added) have.insert(s);
      for (const Serial8& s : p->removed) have.erase(s);
      EXPECT_LE(p->added.size() + p->removed.size(), backend->risk().options().reply_entries_max);
      version = p->version;
      full = p->full;
      if (!p->more) {
        ++pages;
        break;
      }
    }
    return have;
  }
  std::set<Serial8> truth() {
    std::set<Serial8> out;
    auto q = backend->store().query("SELECT serial FROM blacklist");
    while (*q.step()) {
      Serial8 s{};
      const Bytes b = q.column_blob(0);
      std::copy(b.begin(), b.end(), s.begin());
      out.insert(s);
    }
    return out;
  }
};

TEST_F(RiskTest, TerminalsGetDeltasOrTheFullListInBoundedPages) {
  options.money.risk.reply_entries_max = 7;
  options.money.risk.change_log_max = 30;
  fresh();
  Risk& risk = backend->risk();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(risk.list_card(serial(i), "test").is_ok());
  std::uint64_t v = 0;
  int pages = 0;
  std::set<Serial8> held = pull({}, v, pages);
  EXPECT_EQ(held, truth());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(v, *risk.blacklist_version());
  // A delta: two removed, one added.
  ASSERT_TRUE(risk.unlist_card(serial(3)).is_ok());
  ASSERT_TRUE(risk.unlist_card(serial(4)).is_ok());
  ASSERT_TRUE(risk.list_card(serial(100), "lost").is_ok());
  auto delta = risk.page(v, false);
  ASSERT_TRUE(delta.is_ok());
  EXPECT_FALSE(delta->full);
  EXPECT_EQ(delta->added.size(), 1u);
  EXPECT_EQ(delta->removed.size(), 2u);
  held = pull(held, v, pages);
  EXPECT_EQ(held, truth());
  // Listed and unlisted within one page: the last change wins.
  ASSERT_TRUE(risk.list_card(serial(200), "x").is_ok());
  ASSERT_TRUE(risk.unlist_card(serial(200)).is_ok());
  held = pull(held, v, pages);
  EXPECT_EQ(held.count(serial(200)), 0u);
  // A terminal left behind the pruned change log is sent the full list, with reset.
  std::uint64_t stale = 1;
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(risk.list_card(serial(1'000 + i), "wave").is_ok());
    ASSERT_TRUE(risk.unlist_card(serial(1'000 + i)).is_ok());
  }
  auto reset = risk.page(stale, false);
  ASSERT_TRUE(reset.is_ok());
  EXPECT_TRUE(reset->full);
  EXPECT_TRUE(reset->reset);
  std::set<Serial8> junk = {serial(3), serial(999)};  // what a stale terminal might hold
  EXPECT_EQ(pull(junk, stale, pages), truth());
  auto count = backend->store().query("SELECT count(*) FROM blacklist_changes");
  ASSERT_TRUE(*count.step());
  EXPECT_LE(count.column_int64(0), 30) << "the change log is bounded";
}

TEST_F(RiskTest, TheBlacklistIsBoundedAndAFullListIsReportedNotDropped) {
  options.money.risk.blacklist_entries_max = 3;
  fresh();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(backend->risk().list_card(serial(i), "t").is_ok());
  const Status s = backend->risk().list_card(serial(9), "t");
  EXPECT_EQ(s.code(), Errc::kTooLarge);
  EXPECT_NE(s.message().find("full"), std::string::npos);
  // A card whose freeze cannot be listed is not frozen: the two stay in step.
  PurseCard c = issue_card(10);
  EXPECT_EQ(backend->cards().freeze(fin1, c.serial(), "x").code(), Errc::kTooLarge);
  EXPECT_EQ(card(c.card).status, CardStatus::kActive);
}

TEST_F(RiskTest, RejectRulesRefuseAndFlagRulesAwaitAnOperator) {
  add_merchant(merchant("shop"));
  TestTerminal pos = terminal("shop");
  PurseCard c = issue_card(50'000);
  RiskRule big;
  big.kind = RiskKind::kPurchaseAmountOver;
  big.merchant_id = "shop";
  big.threshold = 10'000;
  big.action = RiskAction::kReject;
  EXPECT_EQ(backend->risk().add_rule(fin1, big).status().code(), Errc::kPermissionDenied);
  ASSERT_TRUE(backend->risk().add_rule(admin, big).is_ok());
  RiskRule rate;
  rate.kind = RiskKind::kPurchasesPerMinuteOver;
  rate.threshold = 2;
  rate.action = RiskAction::kFlag;
  ASSERT_TRUE(backend->risk().add_rule(admin, rate).is_ok());

  const auto t = now();
  auto batch = make_batch(pos, {purchase(c.card, pos, 20'000, t), purchase(c.card, pos, 100, t),
                                purchase(c.card, pos, 100, t), purchase(c.card, pos, 100, t)});
  const IngestResult r = backend->upload(batch);
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.ack.rejected(), 1u) << "over the amount: illegal";
  EXPECT_EQ(r.ack.accepted(), 3u);
  // The first purchase was refused, which breaks the card's balance chain for the three after
  // it (the card spent what the backend never believed). All four happened at the merchant
  // within the minute, the refused one too: the third and fourth are over 2.
  ASSERT_EQ(r.ack.problems_size(), 4);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::REJECTED);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(r.ack.problems(i).code(), citycard::wire::SUSPICIOUS);
  EXPECT_EQ(r.ack.problems(1).message().find("purchases within a minute"), std::string::npos);
  EXPECT_NE(r.ack.problems(2).message().find("3 purchases within a minute"), std::string::npos);
  EXPECT_NE(r.ack.problems(3).message().find("4 purchases within a minute"), std::string::npos);
  EXPECT_EQ(balance(account::payable("shop")), -300);
  auto open = backend->risk().events(fin1, {RiskEventState::kOpen, "", 10});
  ASSERT_TRUE(open.is_ok());
  ASSERT_EQ(open->size(), 2u);
  EXPECT_EQ((*open)[0].kind, RiskKind::kPurchasesPerMinuteOver);
  auto refused = backend->risk().events(fin1, {RiskEventState::kRejected, "", 10});
  ASSERT_EQ(refused->size(), 1u);
  EXPECT_EQ((*refused)[0].kind, RiskKind::kPurchaseAmountOver);
  EXPECT_EQ((*refused)[0].amount_fen, 20'000);
  // Deciding: legitimate, once.
  const std::int64_t id = (*open)[0].id;
  ASSERT_TRUE(backend->risk().decide(fin1, id, false).is_ok());
  EXPECT_EQ(backend->risk().decide(fin1, id, true).code(), Errc::kRejected);
  EXPECT_EQ(backend->risk().decide(fin1, (*refused)[0].id, false).code(), Errc::kRejected)
      << "a refusal has nothing to decide";
  EXPECT_EQ(*backend->risk().open_event_count(), 1);
}

TEST_F(RiskTest, ConfirmedFraudBlocksTheCard) {
  add_merchant(merchant("shop"));
  TestTerminal pos = terminal("shop");
  PurseCard c = issue_card(5'000);
  RiskRule big;
  big.kind = RiskKind::kPurchaseAmountOver;
  big.threshold = 1'000;
  ASSERT_TRUE(backend->risk().add_rule(admin, big).is_ok());
  ASSERT_TRUE(backend->upload(make_batch(pos, {purchase(c.card, pos, 2'000, now())})).ok());
  auto open = backend->risk().events(admin, {RiskEventState::kOpen, "", 10});
  ASSERT_EQ(open->size(), 1u);
  ASSERT_TRUE(backend->risk().decide(fin2, (*open)[0].id, true).is_ok());
  EXPECT_EQ(card(c.card).status, CardStatus::kBlocked);
  EXPECT_TRUE(*backend->risk().listed(c.serial()));
  // Blacklisted-card rule: a later offline purchase of the blocked card is refused.
  RiskRule listed;
  listed.kind = RiskKind::kBlacklistedCard;
  listed.action = RiskAction::kReject;
  ASSERT_TRUE(backend->risk().add_rule(admin, listed).is_ok());
  const IngestResult r = backend->upload(make_batch(pos, {purchase(c.card, pos, 100, now())}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.ack.rejected(), 1u);
  EXPECT_EQ(balance(account::payable("shop")), -2'000);
  ASSERT_TRUE(backend->cards().unblock(admin, c.serial()).is_ok());
  EXPECT_FALSE(*backend->risk().listed(c.serial()));
}

TEST_F(RiskTest, RechargeAlarmsFlagOrRefusePerMerchant) {
  MerchantParams shop = merchant("shop");
  shop.recharge_enabled = true;
  add_merchant(shop);
  ASSERT_TRUE(backend->merchants().top_up_quota(fin1, "shop", 50'000).is_ok());
  const Session clerk = add_user("clerk", Role::kMerchantOperator, "shop");
  RiskRule rate;
  rate.kind = RiskKind::kRechargesPerMinuteOver;
  rate.merchant_id = "shop";
  rate.threshold = 2;
  rate.action = RiskAction::kReject;
  ASSERT_TRUE(backend->risk().add_rule(admin, rate).is_ok());
  RiskRule big;
  big.kind = RiskKind::kRechargeAmountOver;
  big.threshold = 5'000;
  ASSERT_TRUE(backend->risk().add_rule(admin, big).is_ok());
  PurseCard c = issue_card(0);
  auto order = [&](const std::string& id, std::int64_t amount) {
    OrderRequest r;
    r.order_id = id;
    r.channel = Channel::kMerchantPos;
    r.merchant_id = "shop";
    r.card = c.serial();
    r.amount_fen = amount;
    return backend->recharge().create_order(clerk, r);
  };
  ASSERT_TRUE(order("R1", 6'000).is_ok()) << "flagged, not refused";
  EXPECT_EQ(*backend->risk().open_event_count(), 1);
  ASSERT_TRUE(order("R2", 100).is_ok());
  auto third = order("R3", 100);
  EXPECT_EQ(third.status().code(), Errc::kRejected) << third.status().to_string();
  auto refused = backend->risk().events(admin, {RiskEventState::kRejected, "shop", 10});
  ASSERT_TRUE(refused.is_ok());
  ASSERT_EQ(refused->size(), 1u) << "the refusal is kept for operators";
  EXPECT_EQ((*refused)[0].ref, "R3");
  EXPECT_EQ(backend->merchants().get(admin, "shop")->quota_fen, 50'000 - 6'100);
  advance_s(60);
  EXPECT_TRUE(order("R4", 100).is_ok()) << "a new minute";
}

}  // namespace
}  // namespace citycard::backend
