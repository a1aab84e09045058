// Load terminals and the clearing centre over the wire (issue 5): the POS recharging within
// its merchant's quota, the issuing desk's counter recharge, and the NFC phone's over-the-air
// load, pending-load completion (补登) after a failed first attempt, balance and last records.
// Real parts: the backend on a SQLite file with its simulated bank, CPU cards it issued, the
// simulated network in virtual time.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include "citycard/backend/backend.h"
#include "citycard/devices/card_link.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/nfc_phone.h"
#include "citycard/devices/online_load.h"
#include "citycard/devices/persistent_queue.h"
#include "citycard/devices/pos_terminal.h"
#include "citycard/devices/psam.h"
#include "citycard/sim/event_loop.h"
#include "citycard/sim/transport.h"

#include "backend_test_support.h"

namespace citycard {
namespace {

using devices::CpuCard;
using devices::DirectLink;
using devices::OnlineLoad;
using devices::TearingLink;

using Proxy = testsupport::ServiceHandler;

// A load terminal on the network: its wire client and its recharge point.
struct LoadTerminal {
  protocol::TerminalId id{};
  std::unique_ptr<sim::Channel> channel;
  std::unique_ptr<devices::OnlineLoadClient> client;
  std::unique_ptr<devices::RechargePoint> point;
};

class OnlineLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = testsupport::open_test_backend("online_load", 9, loop);
    ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
    backend = std::move(opened).value();
    admin = *backend->users().login("root", "password-1");
    proxy = std::make_unique<Proxy>(*backend);
    network = std::make_unique<sim::SimNetwork>(loop, sim::Rng(3), sim::NetworkOptions{});
  }
  void TearDown() override {
    if (backend) {
      Status s = backend->check_conservation();
      EXPECT_TRUE(s.is_ok()) << s.to_string();
    }
  }

  void merchant(const std::string& id, backend::MerchantKind kind, std::int64_t quota_fen) {
    backend::MerchantParams p;
    p.merchant_id = id;
    p.name = id;
    p.kind = kind;
    p.recharge_enabled = true;
    p.bank_name = "ICBC";
    p.bank_account = "6222000011112222";
    p.account_name = id;
    Status s = backend->merchants().create(admin, p);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    if (quota_fen > 0) {
      s = backend->merchants().top_up_quota(admin, id, quota_fen);
      ASSERT_TRUE(s.is_ok()) << s.to_string();
    }
  }

  LoadTerminal terminal(const std::string& operator_id, const std::string& device,
                        wire::Channel channel) {
    LoadTerminal t;
    backend::TerminalParams tp;
    tp.operator_id = operator_id;
    tp.device_id = device;
    auto image = backend->register_terminal(tp);
    EXPECT_TRUE(image.is_ok()) << image.status().to_string();
    t.id = image->terminal_id;
    t.channel = network->connect(*proxy, device);
    devices::OnlineLoadOptions lo;
    lo.terminal_id = t.id;
    lo.pump = [this] { pump(); };
    t.client = std::make_unique<devices::OnlineLoadClient>(lo, *t.channel);
    devices::RechargePointOptions ro;
    ro.channel = channel;
    t.point = std::make_unique<devices::RechargePoint>(ro, *t.client, t.id);
    return t;
  }

  // One step of the world: the network and the backend's bank callbacks.
  void pump() {
    loop.run_until(loop.now_us() + 50'000);
    auto polled = backend->poll();
    ASSERT_TRUE(polled.is_ok()) << polled.status().to_string();
  }

  CpuCard issue(std::int64_t balance_fen) {
    backend::CardParams p;
    p.opening_balance_fen = balance_fen;
    auto image = backend->issue_card(p);
    EXPECT_TRUE(image.is_ok()) << image.status().to_string();
    return CpuCard(*image, sim::Rng(4000 + ++cards_));
  }
  std::int64_t believed(const CpuCard& card) const {
    return backend->issuance().card(card.serial())->balance_fen;
  }
  backend::OrderState state(const std::string& order) const {
    return backend->recharge().order(order)->state;
  }
  protocol::DateTime7 now() const { return backend->calendar().now_datetime(); }

  sim::EventLoop loop;
  std::unique_ptr<backend::Backend> backend;
  backend::Session admin;
  std::unique_ptr<Proxy> proxy;
  std::unique_ptr<sim::SimNetwork> network;
  int cards_ = 0;
};

TEST_F(OnlineLoadTest, PosRechargesWithinItsMerchantsQuotaAndIsRefusedWhenItIsExhausted) {
  merchant("SHOP-1", backend::MerchantKind::kRetail, 1000);
  LoadTerminal pos = terminal("SHOP-1", "POS-1", wire::CHANNEL_MERCHANT_POS);
  CpuCard card = issue(500);
  card.reset();
  DirectLink link(card);
  OnlineLoad r = pos.point->recharge(link, card.serial(), "pos-1-0001", 600, now());
  ASSERT_TRUE(r.ok()) << r.status.to_string() << " / " << r.result.detail;
  ASSERT_TRUE(r.confirmation);
  EXPECT_EQ(r.confirmation->state(), wire::ORDER_LOADED);
  EXPECT_EQ(card.balance_fen(), 1100u);
  EXPECT_EQ(believed(card), 1100);
  EXPECT_EQ(backend->merchants().get(admin, "SHOP-1")->quota_fen, 400);

  // 600 more than the 400 left: refused before the card is touched.
  card.reset();
  DirectLink again(card);
  r = pos.point->recharge(again, card.serial(), "pos-1-0002", 600, now());
  EXPECT_EQ(r.status.code(), Errc::kInsufficientFunds) << r.status.to_string();
  EXPECT_EQ(card.balance_fen(), 1100u);
  EXPECT_EQ(believed(card), 1100);
  EXPECT_EQ(backend->merchants().get(admin, "SHOP-1")->quota_fen, 400);

  // The same order id again is the same order: no second credit.
  card.reset();
  DirectLink third(card);
  r = pos.point->recharge(third, card.serial(), "pos-1-0001", 600, now());
  EXPECT_EQ(r.status.code(), Errc::kDuplicate) << r.status.to_string();
  EXPECT_EQ(card.balance_fen(), 1100u);
}

// The merchant POS itself: recharge within the quota is journalled and totalled at the end of
// the day; past the quota it is refused and counted.
TEST_F(OnlineLoadTest, MerchantPosJournalsItsRechargesAndRefusesPastTheQuota) {
  merchant("SHOP-3", backend::MerchantKind::kRetail, 700);
  backend::TerminalParams tp;
  tp.operator_id = "SHOP-3";
  tp.device_id = "POS-3";
  auto image = backend->register_terminal(tp);
  ASSERT_TRUE(image.is_ok());
  devices::Psam psam(*image);
  auto channel = network->connect(*proxy, "POS-3");
  auto disk = std::make_shared<devices::MemoryDisk>();
  devices::MemoryLogStorage storage(disk);
  devices::PosConfig pc;
  pc.core.device_id = "POS-3";
  pc.core.operator_id = "SHOP-3";
  pc.core.calendar_origin_epoch2000_s = backend->calendar().now_epoch2000_s();
  pc.merchant_id = "SHOP-3";
  pc.manager_password = "8888";
  devices::MerchantPos pos(pc, psam, loop, *channel, storage);
  devices::OnlineLoadOptions lo;
  lo.terminal_id = image->terminal_id;
  lo.pump = [this] { pump(); };
  devices::OnlineLoadClient client(lo, *channel);
  devices::RechargePointOptions ro;
  ro.channel = wire::CHANNEL_MERCHANT_POS;
  devices::RechargePoint point(ro, client, image->terminal_id);

  CpuCard card = issue(0);
  card.reset();
  DirectLink link(card);
  OnlineLoad r = pos.recharge(link, point, "pos3-1", 500);
  ASSERT_TRUE(r.ok()) << r.status.to_string();
  card.reset();
  DirectLink link2(card);
  r = pos.recharge(link2, point, "pos3-2", 500);
  EXPECT_EQ(r.status.code(), Errc::kInsufficientFunds);
  EXPECT_EQ(card.balance_fen(), 500u);
  EXPECT_EQ(believed(card), 500);
  const devices::SettlementTotals t = pos.settle();
  EXPECT_EQ(t.recharges, 1u);
  EXPECT_EQ(t.recharge_fen, 500);
  EXPECT_EQ(pos.statistics().recharges_refused, 1u);
  EXPECT_EQ(backend->merchants().get(admin, "SHOP-3")->quota_fen, 200);
}

TEST_F(OnlineLoadTest, DeskRechargesAtTheCounterAndAnOrdinaryShopMayNot) {
  merchant("DESK-1", backend::MerchantKind::kDesk, 0);
  merchant("SHOP-2", backend::MerchantKind::kRetail, 0);
  LoadTerminal desk = terminal("DESK-1", "DESK-1-A", wire::CHANNEL_COUNTER);
  LoadTerminal shop = terminal("SHOP-2", "POS-2", wire::CHANNEL_COUNTER);
  CpuCard card = issue(0);
  card.reset();
  DirectLink link(card);
  OnlineLoad r = desk.point->recharge(link, card.serial(), "desk-0001", 5000, now());
  ASSERT_TRUE(r.ok()) << r.status.to_string();
  EXPECT_EQ(card.balance_fen(), 5000u);
  EXPECT_EQ(believed(card), 5000);

  card.reset();
  DirectLink link2(card);
  r = shop.point->recharge(link2, card.serial(), "shop-0001", 5000, now());
  EXPECT_EQ(r.status.code(), Errc::kPermissionDenied) << r.status.to_string();
  EXPECT_EQ(card.balance_fen(), 5000u);
}

struct Phone {
  LoadTerminal wallet;
  std::unique_ptr<devices::NfcPhone> phone;
};

class PhoneTest : public OnlineLoadTest {
 protected:
  Phone make_phone(const CpuCard& se) {
    Phone p;
    p.wallet = terminal("WALLET", "wallet-service", wire::CHANNEL_PHONE);
    devices::NfcPhoneOptions o;
    o.terminal_id = p.wallet.id;
    o.card_serial = se.serial();
    p.phone = std::make_unique<devices::NfcPhone>(o, *p.wallet.client);
    return p;
  }
  void SetUp() override {
    OnlineLoadTest::SetUp();
    merchant("WALLET", backend::MerchantKind::kRetail, 0);
  }
};

TEST_F(PhoneTest, OverTheAirLoadThenBalanceAndLastRecordsOnThePhone) {
  CpuCard se = issue(500);
  Phone p = make_phone(se);
  se.reset();
  DirectLink link(se);
  OnlineLoad r = p.phone->ota_load(link, "ota-0001", 3000, now());
  ASSERT_TRUE(r.ok()) << r.status.to_string() << " / " << r.result.detail;
  EXPECT_EQ(state("ota-0001"), backend::OrderState::kLoaded);
  EXPECT_EQ(se.balance_fen(), 3500u);
  EXPECT_EQ(believed(se), 3500);

  r = p.phone->ota_load(link, "ota-0002", 200, now());
  ASSERT_TRUE(r.ok()) << r.status.to_string();
  EXPECT_EQ(*p.phone->balance(link), 3700u);
  auto records = p.phone->last_records(link, 5);
  ASSERT_TRUE(records.is_ok()) << records.status().to_string();
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].amount_fen, 200u);  // newest first
  EXPECT_EQ((*records)[0].type, protocol::txn::kLoadEp);
  EXPECT_EQ((*records)[0].terminal, p.wallet.id);
  EXPECT_EQ((*records)[1].amount_fen, 3000u);
}

// 补登 after a first attempt that failed before the credit: the SE link dropped (the phone left
// the wallet app) after INITIALIZE FOR LOAD, so the backend had issued MAC2 and the order was
// in doubt. The next attempt settles it by the card's online counter and loads it once.
TEST_F(PhoneTest, PendingLoadIsCompletedAfterAFirstAttemptThatNeverReachedTheCredit) {
  CpuCard se = issue(100);
  Phone p = make_phone(se);
  se.reset();
  DirectLink direct(se);
  TearingLink torn(direct);
  torn.tear_at(3, TearingLink::When::kBeforeCommand);  // SELECT, 0x15, INIT FOR LOAD, CREDIT
  OnlineLoad r = p.phone->ota_load(torn, "ota-torn-1", 1000, now());
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.in_doubt) << r.status.to_string() << " / " << r.result.detail;
  EXPECT_EQ(se.balance_fen(), 100u);
  EXPECT_EQ(state("ota-torn-1"), backend::OrderState::kAuthorized);

  se.reset();
  DirectLink next(se);
  auto done = p.phone->complete_pending(next, now());
  ASSERT_FALSE(done.empty());
  EXPECT_TRUE(done[0].ok()) << done[0].status.to_string() << " / " << done[0].result.detail;
  EXPECT_EQ(se.balance_fen(), 1100u);
  EXPECT_EQ(believed(se), 1100);
  EXPECT_EQ(state("ota-torn-1"), backend::OrderState::kLoaded);
  EXPECT_TRUE(p.phone->wallet().in_doubt().empty());
  // Nothing left to collect: a second 补登 changes nothing.
  se.reset();
  DirectLink third(se);
  for (const OnlineLoad& l : p.phone->complete_pending(third, now())) EXPECT_TRUE(l.ok());
  EXPECT_EQ(se.balance_fen(), 1100u);
}

// The credit happened but its answer was lost: the next attempt completes the load from the
// card's proof (GET TRANSACTION PROVE) and confirms it with the TAC; no second credit.
TEST_F(PhoneTest, LoadWhoseAnswerWasLostIsCompletedFromTheCardsProofNotCreditedTwice) {
  CpuCard se = issue(100);
  Phone p = make_phone(se);
  se.reset();
  DirectLink direct(se);
  TearingLink torn(direct);
  torn.tear_at(3, TearingLink::When::kAfterCommand);
  OnlineLoad r = p.phone->ota_load(torn, "ota-torn-2", 1000, now());
  EXPECT_TRUE(r.in_doubt) << r.status.to_string();
  EXPECT_EQ(se.balance_fen(), 1100u);  // the card took it

  se.reset();
  DirectLink next(se);
  auto done = p.phone->complete_pending(next, now());
  ASSERT_FALSE(done.empty());
  EXPECT_TRUE(done[0].ok()) << done[0].status.to_string() << " / " << done[0].result.detail;
  EXPECT_TRUE(done[0].result.recovered);
  EXPECT_EQ(se.balance_fen(), 1100u);
  EXPECT_EQ(believed(se), 1100);
  EXPECT_EQ(state("ota-torn-2"), backend::OrderState::kLoaded);
}

// Paid from the phone, but the SE never answered (the phone's NFC off): the order waits as a
// pending load, which the backend lists and the phone collects later.
TEST_F(PhoneTest, PaidOrderThatNeverReachedTheCardIsListedAndCollected) {
  CpuCard se = issue(0);
  Phone p = make_phone(se);
  se.reset();
  DirectLink direct(se);
  TearingLink torn(direct);
  torn.tear_at(0, TearingLink::When::kBeforeCommand);
  OnlineLoad r = p.phone->ota_load(torn, "ota-paid-1", 800, now());
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(r.in_doubt);
  EXPECT_EQ(state("ota-paid-1"), backend::OrderState::kPaid);
  auto pending = p.wallet.client->pending(se.serial());
  ASSERT_TRUE(pending.is_ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].order_id(), "ota-paid-1");

  se.reset();
  DirectLink next(se);
  auto done = p.phone->complete_pending(next, now());
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].ok()) << done[0].status.to_string();
  EXPECT_EQ(se.balance_fen(), 800u);
  EXPECT_EQ(believed(se), 800);
}

TEST_F(PhoneTest, WalletLinkDownIsAClearErrorAndNothingMoves) {
  CpuCard se = issue(300);
  Phone p = make_phone(se);
  network->set_link_up("wallet-service", false);
  se.reset();
  DirectLink link(se);
  OnlineLoad r = p.phone->ota_load(link, "ota-down-1", 500, now());
  EXPECT_EQ(r.status.code(), Errc::kUnavailable) << r.status.to_string();
  EXPECT_EQ(se.balance_fen(), 300u);
  EXPECT_FALSE(backend->recharge().order("ota-down-1").is_ok());
  network->set_link_up("wallet-service", true);
  r = p.phone->ota_load(link, "ota-down-1", 500, now());
  EXPECT_TRUE(r.ok()) << r.status.to_string();
  EXPECT_EQ(se.balance_fen(), 800u);
}

}  // namespace
}  // namespace citycard
