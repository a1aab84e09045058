#include "citycard/backend/money_service.h"

#include <gtest/gtest.h>

#include "money_test_util.h"

namespace citycard::backend {
namespace {

namespace pw = protocol::wire;
namespace wire = citycard::wire;
using testing::PurseCard;
using testing::TestTerminal;
using wire::Envelope;

class MoneyServiceTest : public testing::MoneyTest {
 protected:
  void SetUp() override {
    MoneyTest::SetUp();
    MerchantParams shop = merchant("shop");
    shop.recharge_enabled = true;
    add_merchant(shop);
    ASSERT_TRUE(backend->merchants().top_up_quota(fin1, "shop", 10'000).is_ok());
    pos = terminal("shop");
    desk = terminal("desk");
    purse = issue_card(1'000);
  }
  Envelope call(const Envelope& request) {
    auto reply = pw::decode(backend->service().handle(pw::encode(request)));
    EXPECT_TRUE(reply.is_ok()) << reply.status().to_string();
    EXPECT_EQ(reply->request_id(), request.request_id());
    return reply.is_ok() ? *reply : Envelope();
  }
  Envelope order(const std::string& id, wire::Channel channel, const TestTerminal& t,
                 std::int64_t amount) {
    Envelope e;
    e.set_request_id(++request_id);
    auto* m = e.mutable_recharge_order();
    m->set_order_id(id);
    m->set_channel(channel);
    m->set_card_serial(pw::field(purse.serial()));
    m->set_amount_fen(amount);
    m->set_terminal_id(pw::field(t.psam.terminal_id));
    return e;
  }
  Envelope auth(const LoadAuthRequest& r) {
    Envelope e;
    e.set_request_id(++request_id);
    auto* m = e.mutable_load_auth();
    m->set_order_id(r.order_id);
    m->set_card_serial(pw::field(r.card));
    m->set_amount_fen(r.init.amount_fen);
    m->set_terminal_id(pw::field(r.init.terminal));
    m->set_balance_before_fen(r.init.balance_before_fen);
    m->set_online_counter(r.init.online_counter);
    m->set_key_version(r.key_version);
    m->set_algorithm_id(static_cast<std::uint32_t>(r.init.algorithm));
    m->set_random(pw::field(r.init.random));
    m->set_mac1(pw::field(r.init.mac1));
    m->set_txn_type(r.init.type);
    return e;
  }
  Envelope confirm(const std::string& id, const TestTerminal& t, const protocol::Mac4& tac) {
    Envelope e;
    e.set_request_id(++request_id);
    e.mutable_load_confirm()->set_order_id(id);
    e.mutable_load_confirm()->set_tac(pw::field(tac));
    e.mutable_load_confirm()->set_terminal_id(pw::field(t.psam.terminal_id));
    return e;
  }
  // The whole load over the wire; returns the confirmation reply.
  Envelope load_over_wire(const std::string& id, const TestTerminal& t, std::int64_t amount) {
    const LoadAuthRequest r = purse.init(id, amount, t.psam.terminal_id);
    const Envelope a = call(auth(r));
    EXPECT_TRUE(a.has_load_auth_reply()) << a.DebugString();
    LoadAuthorization got;
    got.order_id = id;
    EXPECT_TRUE(pw::to_mac(a.load_auth_reply().mac2(), got.mac2));
    EXPECT_TRUE(pw::to_datetime(a.load_auth_reply().datetime(), got.datetime));
    auto tac = purse.credit(r, got);
    EXPECT_TRUE(tac.is_ok()) << tac.status().to_string();
    return call(confirm(id, t, tac.is_ok() ? *tac : protocol::Mac4{}));
  }

  TestTerminal pos, desk;
  PurseCard purse;
  std::uint64_t request_id = 100;
};

TEST_F(MoneyServiceTest, APosSellsARechargeFromItsQuotaAndLoadsItOverTheWire) {
  const Envelope placed = call(order("W-1", wire::CHANNEL_MERCHANT_POS, pos, 2'500));
  ASSERT_TRUE(placed.has_recharge_order_reply()) << placed.DebugString();
  EXPECT_EQ(placed.recharge_order_reply().state(), wire::ORDER_PAID);
  EXPECT_EQ(backend->merchants().get(admin, "shop")->quota_fen, 7'500);
  const Envelope done = load_over_wire("W-1", pos, 2'500);
  ASSERT_TRUE(done.has_load_confirm_reply()) << done.DebugString();
  EXPECT_EQ(done.load_confirm_reply().state(), wire::ORDER_LOADED);
  EXPECT_EQ(done.load_confirm_reply().balance_after_fen(), 3'500);
  EXPECT_EQ(card(purse.card).balance_fen, 3'500);
  // The same order again: the order as it stands, no second charge.
  const Envelope again = call(order("W-1", wire::CHANNEL_MERCHANT_POS, pos, 2'500));
  EXPECT_EQ(again.recharge_order_reply().state(), wire::ORDER_LOADED);
  EXPECT_EQ(backend->merchants().get(admin, "shop")->quota_fen, 7'500);
  const Envelope other = call(order("W-1", wire::CHANNEL_MERCHANT_POS, pos, 2'600));
  ASSERT_TRUE(other.has_error());
  EXPECT_EQ(other.error().code(), wire::CONFLICT);
  // Over the quota.
  const Envelope broke = call(order("W-2", wire::CHANNEL_MERCHANT_POS, pos, 8'000));
  ASSERT_TRUE(broke.has_error());
  EXPECT_EQ(broke.error().code(), wire::INSUFFICIENT_FUNDS);
}

TEST_F(MoneyServiceTest, TerminalsAreCheckedAndChannelsFollowTheirMerchant) {
  TestTerminal stranger = pos;
  stranger.psam.terminal_id = array_from_hex<6>("999999999999");
  const Envelope unknown = call(order("U-1", wire::CHANNEL_BANK, stranger, 100));
  EXPECT_EQ(unknown.error().code(), wire::UNKNOWN_TERMINAL);
  const Envelope shop_counter = call(order("U-2", wire::CHANNEL_COUNTER, pos, 100));
  EXPECT_EQ(shop_counter.error().code(), wire::FORBIDDEN) << "a shop is not the desk";
  const Envelope desk_counter = call(order("U-3", wire::CHANNEL_COUNTER, desk, 100));
  EXPECT_EQ(desk_counter.recharge_order_reply().state(), wire::ORDER_PAID);
  const Envelope internal = call(order("U-4", wire::CHANNEL_REBATE, desk, 100));
  EXPECT_EQ(internal.error().code(), wire::FORBIDDEN);
  Envelope bad = order("U-5", wire::CHANNEL_BANK, desk, 100);
  bad.mutable_recharge_order()->set_card_serial("short");
  EXPECT_EQ(call(bad).error().code(), wire::MALFORMED);
}

TEST_F(MoneyServiceTest, BadMacsForgedTacsAbortsAndPendingLoadsOverTheWire) {
  ASSERT_EQ(call(order("B-1", wire::CHANNEL_COUNTER, desk, 400)).recharge_order_reply().state(),
            wire::ORDER_PAID);
  LoadAuthRequest r = purse.init("B-1", 400, desk.psam.terminal_id);
  r.init.mac1[3] ^= 0xFF;
  EXPECT_EQ(call(auth(r)).error().code(), wire::BAD_MAC);
  // Pending loads of the card, over the wire.
  Envelope q;
  q.set_request_id(7);
  q.mutable_pending_query()->set_card_serial(pw::field(purse.serial()));
  const Envelope list = call(q);
  ASSERT_EQ(list.pending_list().loads_size(), 1);
  EXPECT_EQ(list.pending_list().loads(0).order_id(), "B-1");
  EXPECT_EQ(list.pending_list().loads(0).channel(), wire::CHANNEL_COUNTER);
  // A good MAC1, then a forged TAC.
  const LoadAuthRequest good = purse.init("B-1", 400, desk.psam.terminal_id);
  ASSERT_TRUE(call(auth(good)).has_load_auth_reply());
  EXPECT_EQ(call(confirm("B-1", desk, {9, 9, 9, 9})).error().code(), wire::BAD_MAC);
  // The terminal gives up: the card refused. A desk order goes back to the customer.
  Envelope abort;
  abort.set_request_id(8);
  abort.mutable_load_confirm()->set_order_id("B-1");
  abort.mutable_load_confirm()->set_aborted(true);
  abort.mutable_load_confirm()->set_reason("9302");
  abort.mutable_load_confirm()->set_terminal_id(pw::field(desk.psam.terminal_id));
  const Envelope aborted = call(abort);
  ASSERT_TRUE(aborted.has_load_confirm_reply()) << aborted.DebugString();
  EXPECT_EQ(aborted.load_confirm_reply().state(), wire::ORDER_REVERSED);
  EXPECT_EQ(call(q).pending_list().loads_size(), 0);
  EXPECT_EQ(card(purse.card).balance_fen, 1'000);
}

TEST_F(MoneyServiceTest, BlacklistAndParametersArePulledSinceAVersion) {
  PurseCard lost = issue_card(0, 0, true);
  ASSERT_TRUE(backend->cards().report_lost(fin1, lost.serial()).is_ok());
  ASSERT_TRUE(backend->cards().freeze(fin1, purse.serial(), "dispute").is_ok());
  Envelope req;
  req.set_request_id(5);
  req.mutable_blacklist_request()->set_terminal_id(pw::field(pos.psam.terminal_id));
  const Envelope all = call(req);
  ASSERT_TRUE(all.has_blacklist_reply()) << all.DebugString();
  EXPECT_TRUE(all.blacklist_reply().reset());
  EXPECT_EQ(all.blacklist_reply().added_size(), 2);
  EXPECT_EQ(all.blacklist_reply().version(), 2u);
  ASSERT_TRUE(backend->cards().unfreeze(fin1, purse.serial()).is_ok());
  req.mutable_blacklist_request()->set_since_version(2);
  const Envelope delta = call(req);
  EXPECT_FALSE(delta.blacklist_reply().full());
  ASSERT_EQ(delta.blacklist_reply().removed_size(), 1);
  EXPECT_EQ(delta.blacklist_reply().removed(0), pw::field(purse.serial()));
  EXPECT_EQ(delta.blacklist_reply().version(), 3u);

  wire::FareTable t;
  t.set_table_id("bus-15");
  t.set_flat_fen(200);
  ASSERT_TRUE(backend->fares().publish_fare_table(admin, t).is_ok());
  Envelope p;
  p.set_request_id(6);
  p.mutable_params_request()->set_terminal_id(pw::field(pos.psam.terminal_id));
  const Envelope params = call(p);
  ASSERT_TRUE(params.has_params_reply()) << params.DebugString();
  ASSERT_EQ(params.params_reply().fares_size(), 1);
  EXPECT_EQ(params.params_reply().fares(0).flat_fen(), 200);
  p.mutable_params_request()->set_since_version(params.params_reply().version());
  EXPECT_EQ(call(p).params_reply().fares_size(), 0);
}

}  // namespace
}  // namespace citycard::backend
