// A merchant POS refunds and voids over the wire (issue 5): its sales go up, the manager's
// refund goes through the backend's ledger from the merchant's payable to the holder's online
// account, and the backend's refusals reach the cashier with nothing journalled. Real parts:
// the backend on a SQLite file, a CPU card it issued, the POS with its PSAM and durable queue,
// the simulated network in virtual time.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "citycard/backend/backend.h"
#include "citycard/backend/money.h"
#include "citycard/devices/card_link.h"
#include "citycard/devices/cpu_card.h"
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

class PosRefundScenarioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = testsupport::open_test_backend("pos_refund", 31, loop);
    ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
    backend = std::move(opened).value();
    admin = *backend->users().login("root", "password-1");
    proxy = std::make_unique<testsupport::ServiceHandler>(*backend);
    network = std::make_unique<sim::SimNetwork>(loop, sim::Rng(8), sim::NetworkOptions{});
    for (const char* id : {"SHOP-1", "CAFE-1"}) {
      backend::MerchantParams p;
      p.merchant_id = id;
      p.name = id;
      p.kind = backend::MerchantKind::kRetail;
      p.bank_name = "ICBC";
      p.bank_account = "6222000011112222";
      p.account_name = id;
      ASSERT_TRUE(backend->merchants().create(admin, p).is_ok());
    }
    ASSERT_TRUE(
        backend->users()
            .create_user(admin, {"manager", "m-pass-1", backend::Role::kMerchantOwner, "SHOP-1"})
            .is_ok());
    ASSERT_TRUE(
        backend->users()
            .create_user(admin, {"cashier", "c-pass-1", backend::Role::kMerchantOperator, "SHOP-1"})
            .is_ok());
    backend::TerminalParams tp;
    tp.operator_id = "SHOP-1";
    tp.device_id = "POS-7";
    auto image = backend->register_terminal(tp);
    ASSERT_TRUE(image.is_ok());
    psam = std::make_unique<devices::Psam>(*image);
    channel = network->connect(*proxy, "POS-7");
    devices::PosConfig pc;
    pc.core.device_id = "POS-7";
    pc.core.operator_id = "SHOP-1";
    pc.core.calendar_origin_epoch2000_s = backend->calendar().now_epoch2000_s();
    pc.merchant_id = "SHOP-1";
    pc.require_pin = false;
    pc.manager = "manager";
    pc.pump = [this] { loop.run_until(loop.now_us() + 50'000); };
    pos = std::make_unique<devices::MerchantPos>(pc, *psam, loop, *channel, storage);

    backend::IssueRequest r;
    r.card.opening_balance_fen = 10'000;
    r.holder = backend::HolderInfo{"Han Meimei", "310101199202021234", "", "", false};
    auto card_image = backend->cards().issue(admin, r);
    ASSERT_TRUE(card_image.is_ok()) << card_image.status().to_string();
    card = std::make_unique<CpuCard>(*card_image, sim::Rng(77));
  }
  void TearDown() override {
    if (backend) {
      Status s = backend->check_conservation();
      EXPECT_TRUE(s.is_ok()) << s.to_string();
    }
  }
  void buy(std::uint32_t price) {
    loop.run_until(loop.now_us() + 60'000'000);  // past the double-tap window
    card->reset();
    DirectLink link(*card);
    const devices::SaleResult r = pos->purchase(link, price, "");
    ASSERT_TRUE(r.ok()) << r.detail;
  }
  std::int64_t account() const {
    return backend->cards().info(card->serial())->holder->account_fen;
  }
  std::int64_t ledger(const std::string& a) const { return *backend->ledger().balance(a); }

  sim::EventLoop loop;
  std::unique_ptr<backend::Backend> backend;
  backend::Session admin;
  std::unique_ptr<testsupport::ServiceHandler> proxy;
  std::unique_ptr<sim::SimNetwork> network;
  std::unique_ptr<devices::Psam> psam;
  std::unique_ptr<sim::Channel> channel;
  std::shared_ptr<devices::MemoryDisk> disk = std::make_shared<devices::MemoryDisk>();
  devices::MemoryLogStorage storage{disk};
  std::unique_ptr<devices::MerchantPos> pos;
  std::unique_ptr<CpuCard> card;
};

TEST_F(PosRefundScenarioTest, TheManagersRefundAndVoidReachTheHoldersAccountThroughTheLedger) {
  buy(1'000);  // no 1
  buy(2'500);  // no 2
  // The sales are still on the POS; the refund uploads them first.
  ASSERT_TRUE(pos->refund(2, 700, "m-pass-1").is_ok());
  EXPECT_EQ(account(), 700);
  EXPECT_EQ(ledger(backend::account::payable("SHOP-1")), -(1'000 + 2'500 - 700));
  ASSERT_TRUE(pos->void_sale(1, "m-pass-1").is_ok());
  EXPECT_EQ(account(), 1'700);
  EXPECT_EQ(ledger(backend::account::payable("SHOP-1")), -1'800);
  EXPECT_EQ(ledger(std::string(backend::account::kOnlineAccounts)), -1'700);
  const devices::SettlementTotals t = pos->current_totals();
  EXPECT_EQ(t.refund_fen, 700);
  EXPECT_EQ(t.void_fen, 1'000);
  EXPECT_EQ(t.net_fen(), 1'800) << "the POS's net equals what the backend owes the shop";
  EXPECT_EQ(*backend->pos_refunds().refunded_fen("SHOP-1"), 1'700);
}

TEST_F(PosRefundScenarioTest, TheBackendsRefusalsReachTheCashierWithNothingJournalled) {
  buy(1'000);
  const std::size_t journal = pos->journal().size();
  // The cashier typing their own password is not the manager's authority; nor is a guess.
  EXPECT_EQ(pos->refund(1, 100, "c-pass-1").code(), Errc::kPermissionDenied);
  EXPECT_EQ(pos->last_refund_code(), wire::REFUND_NOT_AUTHORISED);
  EXPECT_EQ(pos->refund(1, 100, "guess").code(), Errc::kPermissionDenied);
  // More than the sale is refused by the POS itself, before the backend.
  EXPECT_EQ(pos->refund(1, 1'001, "m-pass-1").code(), Errc::kRejected);
  EXPECT_EQ(pos->last_refund_code(), wire::OK);
  EXPECT_EQ(pos->journal().size(), journal);
  EXPECT_EQ(account(), 0);
  EXPECT_EQ(ledger(backend::account::payable("SHOP-1")), -1'000);

  // The next day the sale cannot be voided at the backend (the POS's batch still open).
  loop.run_until(loop.now_us() + 86'400'000'000LL);
  EXPECT_EQ(pos->void_sale(1, "m-pass-1").code(), Errc::kRejected);
  EXPECT_EQ(pos->last_refund_code(), wire::VOID_NOT_ALLOWED);
  EXPECT_EQ(pos->journal().size(), journal);
  ASSERT_TRUE(pos->refund(1, 1'000, "m-pass-1").is_ok());
  EXPECT_EQ(account(), 1'000);
}

}  // namespace
}  // namespace citycard
