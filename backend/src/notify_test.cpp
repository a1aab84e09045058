#include "citycard/backend/notify.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "money_test_util.h"

namespace citycard::backend {
namespace {

using testing::PurseCard;
using testing::TestTerminal;

class NotifyTest : public testing::MoneyTest {
 protected:
  MemoryNotificationGateway& gateway() {
    return dynamic_cast<MemoryNotificationGateway&>(backend->notification_gateway());
  }
  std::int64_t flush() {
    auto n = backend->notifier().flush();
    EXPECT_TRUE(n.is_ok()) << n.status().to_string();
    return n.is_ok() ? *n : -1;
  }
};

TEST_F(NotifyTest, NamedCardsHearOfIssueRechargePurchaseAndLowBalance) {
  MerchantParams cafe = merchant("cafe");
  cafe.name = "Blue Cafe";
  add_merchant(cafe);
  TestTerminal pos = terminal("cafe");
  PurseCard c = issue_card(1'000, 0, true);
  PurseCard anon = issue_card(1'000);
  EXPECT_EQ(flush(), 2) << "the named card's issue, by SMS and e-mail";
  counter_load(c, "N-1", 500);
  ASSERT_TRUE(backend
                  ->upload(make_batch(pos, {purchase(c.card, pos, 1'100, now()),
                                            purchase(anon.card, pos, 100, now())}))
                  .ok());
  EXPECT_EQ(flush(), 6) << "recharge, purchase, low balance; twice each";
  const auto& sent = gateway().sent();
  ASSERT_EQ(sent.size(), 8u);
  EXPECT_NE(sent[2].body.find("充值5.00元，余额15.00元"), std::string::npos) << sent[2].body;
  EXPECT_NE(sent[4].body.find("在Blue Cafe消费11.00元，余额4.00元"), std::string::npos)
      << sent[4].body;
  EXPECT_EQ(sent[6].event, NotifyEvent::kLowBalance);
  EXPECT_EQ(sent[6].channel, NotifyChannel::kSms);
  EXPECT_EQ(sent[7].channel, NotifyChannel::kEmail);
  // Transit rides are not news.
  add_merchant(merchant("bus", MerchantKind::kTransit));
  TestTerminal bus = terminal("bus", "15");
  ASSERT_TRUE(backend->upload(make_batch(bus, {purchase(c.card, bus, 100, now())})).ok());
  EXPECT_EQ(flush(), 0);
}

TEST_F(NotifyTest, TemplatesHistoryRetriesAndExpiry) {
  EXPECT_EQ(backend->notifier()
                .set_template(fin1, NotifyEvent::kRecharge, NotifyChannel::kSms, "x")
                .code(),
            Errc::kPermissionDenied);
  ASSERT_TRUE(backend->notifier()
                  .set_template(admin, NotifyEvent::kRecharge, NotifyChannel::kSms,
                                "Card {card}: +{amount}, now {balance}. {unknown}")
                  .is_ok());
  PurseCard c = issue_card(0, 0, true);
  gateway().fail_next(2);
  EXPECT_EQ(flush(), 0) << "the gateway is down";
  EXPECT_EQ(*backend->notifier().queued_count(), 2) << "kept for the next flush";
  EXPECT_EQ(flush(), 2);
  counter_load(c, "T-1", 1'234);
  EXPECT_EQ(flush(), 2);
  EXPECT_EQ(gateway().sent()[2].body,
            "Card " + c.card.image.card_number + ": +12.34, now 12.34. {unknown}");
  auto history = backend->notifier().history(fin1, {c.serial(), "", NotifyEvent::kRecharge, 10});
  ASSERT_TRUE(history.is_ok());
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0].state, NotifyState::kSent);
  add_merchant(merchant("shop"));
  const Session owner = add_user("owner", Role::kMerchantOwner, "shop");
  EXPECT_EQ(backend->notifier().history(owner, {}).status().code(), Errc::kPermissionDenied);

  // A card expiring within 30 days hears of it once.
  IssueRequest r;
  r.card.valid_to = protocol::date_bcd(2024, 1, 20);
  r.holder = HolderInfo{"Wang", "110101195001011111", "13911112222", "", true};
  auto img = backend->cards().issue(fin1, r);
  ASSERT_TRUE(img.is_ok());
  EXPECT_EQ(*backend->notifier().check_expiry(), 1);
  EXPECT_EQ(*backend->notifier().check_expiry(), 0);
  ASSERT_TRUE(backend->poll().is_ok());  // flushes
  EXPECT_EQ(gateway().sent().back().event, NotifyEvent::kExpiry);
  EXPECT_NE(gateway().sent().back().body.find("2024-01-20"), std::string::npos);
}

TEST_F(NotifyTest, TheDefaultGatewayOfAFileDatabaseWritesAFile) {
  testing::TempDir dir;
  const std::string db = dir.file("city.db");
  open(db);
  init();
  issue_card(0, 0, true);
  ASSERT_TRUE(backend->poll().is_ok());
  std::ifstream in(db + ".notifications.log");
  ASSERT_TRUE(in.good());
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    EXPECT_NE(line.find("\t"), std::string::npos);
  }
  EXPECT_EQ(lines, 2);
  EXPECT_TRUE(backend->check_conservation().is_ok());
  backend.reset();  // before the directory goes (TearDown skips a closed backend)
}

}  // namespace
}  // namespace citycard::backend
