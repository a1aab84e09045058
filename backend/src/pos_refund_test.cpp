// POS refund and void over the wire (pos_refund.h): the money goes from the merchant's
// payable back to the holder's online account through the ledger, under a manager's
// authority, once per refund id; settlement deducts it from the merchant's payout.
#include "citycard/backend/pos_refund.h"

#include <gtest/gtest.h>

#include "citycard/backend/money.h"
#include "money_test_util.h"

namespace citycard::backend {
namespace {

namespace pw = protocol::wire;
using citycard::wire::Envelope;
using testing::PurseCard;
using testing::TestTerminal;

class PosRefundTest : public testing::MoneyTest {
 protected:
  void SetUp() override {
    MoneyTest::SetUp();
    MerchantParams shop = merchant("shop");
    shop.txn_fee_bp = 100;
    add_merchant(shop);
    add_merchant(merchant("cafe"));
    shop_pos = terminal("shop");
    cafe_pos = terminal("cafe");
    add_user("boss", Role::kMerchantOwner, "shop");
    add_user("clerk", Role::kMerchantOperator, "shop");
    add_user("cafe-boss", Role::kMerchantOwner, "cafe");
    named = issue_card(5'000, 0, true);
    anonymous = issue_card(5'000);
  }

  // A sale of `amount` at `t`, uploaded; returns the card counter it used.
  std::uint32_t sale(PurseCard& c, TestTerminal& t, std::int64_t amount) {
    const std::uint32_t counter = c.card.counter;
    const IngestResult r = backend->upload(make_batch(t, {purchase(c.card, t, amount, now())}));
    EXPECT_TRUE(r.ok()) << r.message;
    EXPECT_EQ(r.ack.problems_size(), 0);
    return counter;
  }
  Envelope request(const std::string& id, const PurseCard& c, std::uint32_t counter,
                   std::int64_t amount,
                   citycard::wire::PosRefundKind kind = citycard::wire::POS_REFUND,
                   const TestTerminal* t = nullptr, const std::string& manager = "boss",
                   const std::string& password = "password-1") {
    Envelope e;
    e.set_request_id(++request_id);
    auto* m = e.mutable_pos_refund();
    m->set_terminal_id(pw::field((t ? *t : shop_pos).psam.terminal_id));
    m->set_refund_id(id);
    m->set_kind(kind);
    m->set_card_serial(pw::field(c.serial()));
    m->set_card_counter(counter);
    m->set_amount_fen(amount);
    m->set_manager(manager);
    m->set_manager_password(password);
    m->set_reason("customer returned the goods");
    return e;
  }
  Envelope send(const Envelope& e) {
    // Through the framed path, as a terminal's bytes arrive.
    auto reply = pw::decode(backend->service().handle(pw::encode(e)));
    EXPECT_TRUE(reply.is_ok());
    EXPECT_EQ(reply->request_id(), e.request_id());
    return *reply;
  }
  citycard::wire::Code refused(const Envelope& e) {
    const std::int64_t postings = posting_count();
    const std::int64_t accounts = ledger(account::kOnlineAccounts);
    const Envelope r = send(e);
    EXPECT_TRUE(r.has_error()) << r.DebugString();
    EXPECT_FALSE(r.error().message().empty());
    EXPECT_EQ(posting_count(), postings) << "a refusal moves nothing";
    EXPECT_EQ(ledger(account::kOnlineAccounts), accounts);
    return r.error().code();
  }
  std::int64_t account(const PurseCard& c) {
    return backend->cards().info(c.serial())->holder->account_fen;
  }

  TestTerminal shop_pos, cafe_pos;
  PurseCard named, anonymous;
  std::uint64_t request_id = 0;
};

TEST_F(PosRefundTest, RefundsGoBackToTheHoldersAccountThroughTheLedgerUpToTheSale) {
  const std::uint32_t n = sale(named, shop_pos, 1'000);
  EXPECT_EQ(ledger(account::payable("shop")), -1'000);

  Envelope r = send(request("R-1", named, n, 300));
  ASSERT_TRUE(r.has_pos_refund_reply()) << r.DebugString();
  EXPECT_EQ(r.pos_refund_reply().refund_id(), "R-1");
  EXPECT_EQ(r.pos_refund_reply().amount_fen(), 300);
  EXPECT_EQ(r.pos_refund_reply().original_fen(), 1'000);
  EXPECT_EQ(r.pos_refund_reply().refunded_total_fen(), 300);
  EXPECT_EQ(r.pos_refund_reply().account_fen(), 300);
  EXPECT_FALSE(r.pos_refund_reply().duplicate());
  EXPECT_EQ(account(named), 300);
  EXPECT_EQ(ledger(account::payable("shop")), -700);
  EXPECT_EQ(ledger(account::kOnlineAccounts), -300);

  r = send(request("R-2", named, n, 700));
  ASSERT_TRUE(r.has_pos_refund_reply()) << r.DebugString();
  EXPECT_EQ(r.pos_refund_reply().refunded_total_fen(), 1'000);
  EXPECT_EQ(account(named), 1'000);
  EXPECT_EQ(ledger(account::payable("shop")), 0);
  // Nothing is left of the sale.
  EXPECT_EQ(refused(request("R-3", named, n, 1)), citycard::wire::REFUND_EXCEEDS_ORIGINAL);
  EXPECT_EQ(*backend->pos_refunds().refunded_fen("shop"), 1'000);
  // The audit log names the manager.
  AuditFilter f;
  f.action = "pos_refund";
  auto log = backend->users().audit_log(admin, f);
  ASSERT_TRUE(log.is_ok());
  ASSERT_FALSE(log->empty());
  EXPECT_EQ(log->front().actor, "boss");
}

TEST_F(PosRefundTest, RefusalsMoveNothing) {
  const std::uint32_t n = sale(named, shop_pos, 1'000);
  const std::uint32_t a = sale(anonymous, shop_pos, 500);
  EXPECT_EQ(refused(request("X-1", named, n, 1'001)), citycard::wire::REFUND_EXCEEDS_ORIGINAL);
  EXPECT_EQ(refused(request("X-2", named, n + 7, 100)), citycard::wire::ORIGINAL_NOT_FOUND);
  // The cafe's manager, at the cafe's POS, refunding the shop's sale.
  EXPECT_EQ(
      refused(request("X-3", named, n, 100, citycard::wire::POS_REFUND, &cafe_pos, "cafe-boss")),
      citycard::wire::WRONG_MERCHANT);
  // Authority: wrong password, a clerk, another merchant's manager, nobody.
  EXPECT_EQ(
      refused(request("X-4", named, n, 100, citycard::wire::POS_REFUND, nullptr, "boss", "guess")),
      citycard::wire::REFUND_NOT_AUTHORISED);
  EXPECT_EQ(refused(request("X-5", named, n, 100, citycard::wire::POS_REFUND, nullptr, "clerk")),
            citycard::wire::REFUND_NOT_AUTHORISED);
  EXPECT_EQ(
      refused(request("X-6", named, n, 100, citycard::wire::POS_REFUND, nullptr, "cafe-boss")),
      citycard::wire::REFUND_NOT_AUTHORISED);
  EXPECT_EQ(refused(request("X-7", named, n, 100, citycard::wire::POS_REFUND, nullptr, "")),
            citycard::wire::REFUND_NOT_AUTHORISED);
  // An anonymous card has no account to refund to.
  EXPECT_EQ(refused(request("X-8", anonymous, a, 100)), citycard::wire::NO_REFUND_ACCOUNT);
  // Malformed: a zero amount, an unprintable id, a short terminal id.
  EXPECT_EQ(refused(request("X-9", named, n, 0)), citycard::wire::MALFORMED);
  EXPECT_EQ(refused(request("bad id", named, n, 100)), citycard::wire::MALFORMED);
  Envelope shortid = request("X-10", named, n, 100);
  shortid.mutable_pos_refund()->set_terminal_id("abc");
  EXPECT_EQ(refused(shortid), citycard::wire::MALFORMED);
  // An unregistered terminal.
  Envelope stranger = request("X-11", named, n, 100);
  stranger.mutable_pos_refund()->set_terminal_id(std::string(6, '\x7f'));
  EXPECT_EQ(refused(stranger), citycard::wire::UNKNOWN_TERMINAL);
  EXPECT_EQ(account(named), 0);
  EXPECT_EQ(ledger(account::payable("shop")), -1'500);
  EXPECT_EQ(*backend->pos_refunds().refunded_fen("shop"), 0);
}

TEST_F(PosRefundTest, ARepeatedRequestIsAnsweredOnceAndAnotherUnderItsIdIsAConflict) {
  const std::uint32_t n = sale(named, shop_pos, 1'000);
  const Envelope first = send(request("R-9", named, n, 400));
  ASSERT_TRUE(first.has_pos_refund_reply()) << first.DebugString();
  const std::int64_t postings = posting_count();
  // The answer was lost; the POS asks again with the same id.
  const Envelope again = send(request("R-9", named, n, 400));
  ASSERT_TRUE(again.has_pos_refund_reply()) << again.DebugString();
  EXPECT_TRUE(again.pos_refund_reply().duplicate());
  EXPECT_EQ(again.pos_refund_reply().amount_fen(), 400);
  EXPECT_EQ(again.pos_refund_reply().refunded_total_fen(), 400);
  EXPECT_EQ(again.pos_refund_reply().account_fen(), 400);
  EXPECT_EQ(posting_count(), postings);
  EXPECT_EQ(account(named), 400);
  // The same id for another amount.
  EXPECT_EQ(refused(request("R-9", named, n, 500)), citycard::wire::CONFLICT);
  EXPECT_EQ(ledger(account::payable("shop")), -600);
}

TEST_F(PosRefundTest, AVoidIsTheWholeSaleTheSameDayOnly) {
  const std::uint32_t n1 = sale(named, shop_pos, 800);
  const std::uint32_t n2 = sale(named, shop_pos, 600);
  const std::uint32_t n3 = sale(named, shop_pos, 900);
  using citycard::wire::POS_VOID;
  EXPECT_EQ(refused(request("V-0", named, n1, 700, POS_VOID)), citycard::wire::VOID_NOT_ALLOWED);
  const Envelope v = send(request("V-1", named, n1, 800, POS_VOID));
  ASSERT_TRUE(v.has_pos_refund_reply()) << v.DebugString();
  EXPECT_EQ(account(named), 800);
  EXPECT_EQ(refused(request("V-2", named, n1, 800, POS_VOID)),
            citycard::wire::VOID_NOT_ALLOWED);  // voided already
  // Refunded in part: no void after.
  ASSERT_TRUE(send(request("R-1", named, n2, 100)).has_pos_refund_reply());
  EXPECT_EQ(refused(request("V-3", named, n2, 600, POS_VOID)), citycard::wire::VOID_NOT_ALLOWED);
  // The next day: refund instead.
  next_day();
  EXPECT_EQ(refused(request("V-4", named, n3, 900, POS_VOID)), citycard::wire::VOID_NOT_ALLOWED);
  ASSERT_TRUE(send(request("R-2", named, n3, 900)).has_pos_refund_reply());
  EXPECT_EQ(account(named), 1'800);
}

TEST_F(PosRefundTest, SettlementDeductsRefundsAndARefundTheDayCannotCoverWaits) {
  // Day 1: sales of 1,000 and a refund of 400 of them.
  const std::uint32_t n = sale(named, shop_pos, 1'000);
  ASSERT_TRUE(send(request("R-1", named, n, 400)).has_pos_refund_reply());
  next_day();
  auto b = backend->settlement().prepare(fin1);
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  const SettlementLine* line = nullptr;
  for (const auto& l : b->lines) {
    if (l.party_id == "shop") line = &l;
  }
  ASSERT_NE(line, nullptr);
  EXPECT_EQ(line->gross_fen, 1'000);
  EXPECT_EQ(line->fee_fen, 10);
  EXPECT_EQ(line->refund_count, 1);
  EXPECT_EQ(line->refund_fen, 400);
  EXPECT_EQ(line->net_fen, 1'000 - 10 - 400);
  ASSERT_TRUE(backend->settlement().approve(fin2, b->id).is_ok());
  EXPECT_EQ(ledger(account::payable("shop")), 0);
  EXPECT_EQ(ledger(account::kBankClearing), -590);

  // Day 2: a refund of the rest of day 1's sale, no sales: the payout cannot cover it yet.
  ASSERT_TRUE(send(request("R-2", named, n, 600)).has_pos_refund_reply());
  EXPECT_EQ(ledger(account::payable("shop")), 600) << "the shop owes it until its next payout";
  next_day();
  b = backend->settlement().prepare(fin1);
  ASSERT_TRUE(b.is_ok());
  for (const auto& l : b->lines) {
    if (l.party_id != "shop") continue;
    EXPECT_EQ(l.refund_fen, 0);
    EXPECT_EQ(l.net_fen, 0);
  }
  ASSERT_TRUE(backend->settlement().approve(fin2, b->id).is_ok());
  EXPECT_TRUE(backend->check_conservation().is_ok());
  // Day 3: sales of 2,000 cover it.
  sale(named, shop_pos, 2'000);
  next_day();
  b = backend->settlement().prepare(fin1);
  ASSERT_TRUE(b.is_ok());
  std::int64_t refunds = 0, net = 0;
  for (const auto& l : b->lines) {
    if (l.party_id != "shop") continue;
    refunds += l.refund_fen;
    net += l.net_fen;
  }
  EXPECT_EQ(refunds, 600);
  EXPECT_EQ(net, 2'000 - 20 - 600);
  ASSERT_TRUE(backend->settlement().approve(fin2, b->id).is_ok());
  EXPECT_EQ(ledger(account::payable("shop")), 0);
}

}  // namespace
}  // namespace citycard::backend
