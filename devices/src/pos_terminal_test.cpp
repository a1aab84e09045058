#include "citycard/devices/pos_terminal.h"

#include <gtest/gtest.h>

#include "citycard/devices/cpu_card.h"
#include "citycard/sim/event_loop.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

using testing::card_image;
using testing::ScriptedChannel;
using Outcome = ScriptedChannel::Outcome;

PosConfig config(sim::EventLoop* loop = nullptr) {
  PosConfig c;
  c.manager = "boss";
  if (loop != nullptr) c.pump = [loop] { loop->run_until(loop->now_us() + 1'000); };
  c.core.device_id = "POS-1";
  c.core.operator_id = "MALL-9";
  c.core.calendar_origin_epoch2000_s =
      protocol::epoch2000_from_datetime(array_from_hex<7>("20240315100000"));
  c.merchant_id = "M-0001";
  c.discount_bp = 500;  // 5 % off
  c.manager_password = "8888";
  return c;
}

struct Shop {
  Shop()
      : psam(testing::psam_image()),
        channel(loop),
        storage(disk),
        pos(config(&loop), psam, loop, channel, storage) {}
  SaleResult buy(CpuCard& card, std::uint32_t price, const std::string& pin = "123456") {
    card.reset();
    DirectLink link(card);
    return pos.purchase(link, price, pin);
  }
  sim::EventLoop loop;
  Psam psam;
  ScriptedChannel channel;
  std::shared_ptr<MemoryDisk> disk = std::make_shared<MemoryDisk>();
  MemoryLogStorage storage;
  MerchantPos pos;
};

TEST(MerchantPos, PurchaseWithPinAndMerchantDiscountRoundedInTheRidersFavour) {
  Shop s;
  CpuCard card(card_image(1, 10'000), sim::Rng(1));
  const SaleResult r = s.buy(card, 1999);  // 5 % of 1999 = 99.95 -> 100 off (backend's rate_of)
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.record.amount_fen(), 1899);
  EXPECT_EQ(r.record.fare_full_fen(), 1999);
  EXPECT_EQ(card.balance_fen(), 8101u);
  card.reset();
  DirectLink link(card);
  const Result<std::uint32_t> balance = s.pos.balance(link);
  ASSERT_TRUE(balance.is_ok());
  EXPECT_EQ(*balance, 8101u);
}

TEST(MerchantPos, WrongPinIsRefusedWithoutADebitAndCostsATry) {
  Shop s;
  CpuCard card(card_image(1, 10'000), sim::Rng(1));
  const std::uint8_t tries = card.pin_tries_left();
  const SaleResult r = s.buy(card, 1000, "654321");
  EXPECT_EQ(r.local, LocalRefusal::kWrongPin);
  EXPECT_EQ(r.sw & 0xFFF0, 0x63C0);
  EXPECT_EQ(card.balance_fen(), 10'000u);
  EXPECT_EQ(card.pin_tries_left(), tries - 1);
  EXPECT_EQ(s.buy(card, 1000, "12a4").local, LocalRefusal::kWrongPin);
  EXPECT_TRUE(s.buy(card, 1000).ok());
}

TEST(MerchantPos, RefusesExpiredBlacklistedAndPoorCards) {
  Shop s;
  protocol::CardImage old = card_image(1, 10'000);
  old.valid_to = protocol::date_bcd(2023, 1, 1);
  CpuCard expired(old, sim::Rng(1));
  EXPECT_EQ(s.buy(expired, 100).refusal, Refusal::kCardExpired);
  CpuCard poor(card_image(2, 100), sim::Rng(2));
  EXPECT_EQ(s.buy(poor, 1000).refusal, Refusal::kInsufficientBalance);
  const protocol::Serial8 listed = testing::serial_of(3);
  s.pos.core().engine().set_blacklist([listed](const protocol::Serial8& x) { return x == listed; });
  CpuCard stolen(card_image(3, 10'000), sim::Rng(3));
  EXPECT_EQ(s.buy(stolen, 100).refusal, Refusal::kBlacklisted);
  EXPECT_EQ(s.pos.journal().size(), 0u);
}

TEST(MerchantPos, VoidRefundReprintAndSettlementTotals) {
  Shop s;
  CpuCard card(card_image(1, 100'000), sim::Rng(1));
  ASSERT_TRUE(s.buy(card, 1000).ok());  // no 1: 950
  s.loop.run_until(20'000'000);         // past the double-tap window
  ASSERT_TRUE(s.buy(card, 2000).ok());  // no 2: 1900
  // The backend refuses a wrong manager password: nothing is journalled.
  EXPECT_EQ(s.pos.void_sale(1, "0000").code(), Errc::kPermissionDenied);
  EXPECT_EQ(s.pos.last_refund_code(), citycard::wire::REFUND_NOT_AUTHORISED);
  EXPECT_EQ(s.pos.journal().size(), 2u);
  // The sales went up before the first request (the backend refunds only what it has).
  ASSERT_EQ(s.channel.clearing.batches.size(), 1u);
  EXPECT_EQ(s.channel.clearing.batches[0].record_count(), 2u);
  ASSERT_TRUE(s.pos.void_sale(1, "8888").is_ok());                   // no 3
  EXPECT_EQ(s.pos.void_sale(1, "8888").code(), Errc::kRejected);     // once only (locally)
  EXPECT_EQ(s.pos.refund(2, 2000, "8888").code(), Errc::kRejected);  // more than paid
  ASSERT_TRUE(s.pos.refund(2, 400, "8888").is_ok());                 // no 4
  const auto& sent = s.channel.clearing.refunds;
  ASSERT_EQ(sent.size(), 3u) << "local refusals never reach the backend";
  EXPECT_EQ(sent[1].kind(), citycard::wire::POS_VOID);
  EXPECT_EQ(sent[1].amount_fen(), 950);
  EXPECT_EQ(sent[1].manager(), "boss");
  EXPECT_EQ(sent[1].terminal_id(), protocol::wire::field(s.psam.terminal_id()));
  EXPECT_EQ(sent[1].card_serial(), protocol::wire::field(testing::serial_of(1)));
  EXPECT_EQ(sent[1].card_counter(), s.pos.journal()[0].record.card_counter());
  EXPECT_EQ(sent[2].kind(), citycard::wire::POS_REFUND);
  EXPECT_EQ(sent[2].amount_fen(), 400);
  EXPECT_EQ(sent[2].refund_id(), to_hex(testing::serial_of(1)) + "-" +
                                     std::to_string(s.pos.journal()[1].record.card_counter()) +
                                     "-R1");

  const std::optional<std::string> receipt = s.pos.reprint(2);
  ASSERT_TRUE(receipt);
  EXPECT_NE(receipt->find("PURCHASE 19.00"), std::string::npos) << *receipt;
  EXPECT_NE(receipt->find("PRICE 20.00"), std::string::npos);
  EXPECT_FALSE(s.pos.reprint(99));

  const SettlementTotals t = s.pos.settle();
  EXPECT_EQ(t.batch, 1u);
  EXPECT_EQ(t.purchases, 2u);
  EXPECT_EQ(t.purchase_fen, 2850);
  EXPECT_EQ(t.voids, 1u);
  EXPECT_EQ(t.void_fen, 950);
  EXPECT_EQ(t.refunds, 1u);
  EXPECT_EQ(t.refund_fen, 400);
  EXPECT_EQ(t.net_fen(), 1500);
  s.loop.run();
  ASSERT_EQ(s.channel.clearing.batches.size(), 1u);
  EXPECT_EQ(s.channel.clearing.batches[0].total_amount_fen(), 2850);
  // A settled sale cannot be voided any more, only refunded.
  EXPECT_EQ(s.pos.void_sale(2, "8888").code(), Errc::kRejected);
  EXPECT_EQ(s.pos.current_totals().purchases, 0u);
}

// A refund whose answer was lost: nothing is journalled, and the same refund again carries the
// same id, so the backend pays it once (its answer says duplicate) and the POS journals it once.
TEST(MerchantPos, ARefundWhoseAnswerWasLostIsAskedAgainUnderTheSameId) {
  Shop s;
  CpuCard card(card_image(1, 100'000), sim::Rng(1));
  ASSERT_TRUE(s.buy(card, 1000).ok());  // no 1: 950
  s.pos.core().upload();
  s.loop.run();
  ASSERT_EQ(s.channel.clearing.batches.size(), 1u);
  s.channel.script = {Outcome::kTimeout};
  EXPECT_EQ(s.pos.refund(1, 300, "8888").code(), Errc::kTimeout);
  EXPECT_EQ(s.pos.journal().size(), 1u);
  EXPECT_EQ(s.pos.current_totals().refunds, 0u);
  ASSERT_TRUE(s.pos.refund(1, 300, "8888").is_ok());
  const auto& sent = s.channel.clearing.refunds;
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].refund_id(), sent[1].refund_id());
  EXPECT_EQ(s.pos.current_totals().refunds, 1u);
  EXPECT_EQ(s.pos.current_totals().refund_fen, 300);
  // The next refund of the same sale is another request.
  ASSERT_TRUE(s.pos.refund(1, 100, "8888").is_ok());
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_NE(sent[2].refund_id(), sent[1].refund_id());
  EXPECT_EQ(s.pos.journal()[0].refunded_fen, 400u);
  // The link down with sales still queued: the refund is not sent.
  s.loop.run_until(s.loop.now_us() + 60'000'000);
  ASSERT_TRUE(s.buy(card, 500).ok());
  s.channel.script = {Outcome::kLinkDown, Outcome::kLinkDown, Outcome::kLinkDown};
  EXPECT_EQ(s.pos.refund(1, 100, "8888").code(), Errc::kUnavailable);
  EXPECT_EQ(sent.size(), 3u);
}

TEST(MerchantPos, LostAnswerThenSameCardAgainChargesExactlyOnce) {
  Shop s;
  CpuCard card(card_image(1, 10'000), sim::Rng(1));
  card.reset();
  DirectLink inner(card);
  TearingLink torn(inner);
  // 5 reads, VERIFY, SELECT, 0x15, INITIALIZE, DEBIT = exchange 9.
  torn.tear_at(9, TearingLink::When::kAfterCommand);
  SaleResult r = s.pos.purchase(torn, 1000, "123456");
  EXPECT_EQ(r.refusal, Refusal::kTorn) << r.detail;
  EXPECT_TRUE(s.pos.last_sale_uncertain());
  EXPECT_EQ(card.balance_fen(), 9050u);
  r = s.buy(card, 1000);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_TRUE(r.recovered);
  EXPECT_FALSE(s.pos.last_sale_uncertain());
  EXPECT_EQ(card.balance_fen(), 9050u);
  // Torn before the DEBIT reached the card: nothing taken; the retry charges once.
  CpuCard other(card_image(2, 10'000), sim::Rng(2));
  other.reset();
  DirectLink inner2(other);
  TearingLink early(inner2);
  early.tear_at(9, TearingLink::When::kBeforeCommand);
  EXPECT_EQ(s.pos.purchase(early, 1000, "123456").refusal, Refusal::kTorn);
  EXPECT_EQ(other.balance_fen(), 10'000u);
  r = s.buy(other, 1000);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_FALSE(r.recovered);
  EXPECT_EQ(other.balance_fen(), 9050u);
}

TEST(MerchantPos, LinkDownThenUpUploadsTheDaysRecords) {
  Shop s;
  s.channel.script = {Outcome::kLinkDown};
  CpuCard card(card_image(1, 10'000), sim::Rng(1));
  ASSERT_TRUE(s.buy(card, 100).ok());
  (void)s.pos.settle();
  s.loop.run();
  EXPECT_EQ(s.pos.core().queue().size(), 1u);
  s.pos.core().upload();
  s.loop.run();
  EXPECT_EQ(s.pos.core().queue().size(), 0u);
  EXPECT_EQ(s.channel.clearing.batches.size(), 1u);
}

}  // namespace
}  // namespace citycard::devices

namespace citycard::devices {
namespace {

struct Shop2 {
  Shop2()
      : psam(testing::psam_image()),
        channel(loop),
        storage(disk),
        pos(config(&loop), psam, loop, channel, storage) {}
  template <class F>
  auto with(CpuCard& card, F f) {
    card.reset();
    DirectLink link(card);
    return f(link);
  }
  sim::EventLoop loop;
  Psam psam;
  ScriptedChannel channel;
  std::shared_ptr<MemoryDisk> disk = std::make_shared<MemoryDisk>();
  MemoryLogStorage storage;
  MerchantPos pos;
};

TEST(MerchantPosMore, PinChangeNeedsTheOldPinAndTheNewOneWorksAfter) {
  Shop2 s;
  CpuCard card(card_image(1, 10'000), sim::Rng(1));
  const std::uint8_t tries = card.pin_tries_left();
  Status st = s.with(card, [&](CardLink& l) { return s.pos.change_pin(l, "000000", "2468"); });
  EXPECT_EQ(st.code(), Errc::kRejected) << st.to_string();
  EXPECT_EQ(card.pin_tries_left(), tries - 1);
  EXPECT_EQ(s.with(card, [&](CardLink& l) { return s.pos.change_pin(l, "123456", "24x8"); })
                .code(),
            Errc::kInvalidArgument);
  st = s.with(card, [&](CardLink& l) { return s.pos.change_pin(l, "123456", "2468"); });
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(s.with(card, [&](CardLink& l) { return s.pos.purchase(l, 100, "123456"); }).local,
            LocalRefusal::kWrongPin);
  EXPECT_TRUE(s.with(card, [&](CardLink& l) { return s.pos.purchase(l, 100, "2468"); }).ok());
  EXPECT_EQ(s.pos.statistics().pin_changes, 1u);
  EXPECT_EQ(s.pos.statistics().wrong_pins, 2u);
}

TEST(MerchantPosMore, PreAuthorisationThenCompletionChargesTheFinalAmountOnce) {
  Shop2 s;
  CpuCard card(card_image(1, 10'000), sim::Rng(1));
  CpuCard other(card_image(2, 10'000), sim::Rng(2));
  auto no = s.with(card, [&](CardLink& l) { return s.pos.pre_authorise(l, 5000, "123456"); });
  ASSERT_TRUE(no.is_ok()) << no.status().to_string();
  EXPECT_EQ(card.balance_fen(), 10'000u);  // nothing moves yet
  // Over the authorised amount, or another card: refused.
  EXPECT_EQ(s.with(card, [&](CardLink& l) { return s.pos.complete(l, *no, 5001); }).local,
            LocalRefusal::kNotAuthorised);
  EXPECT_EQ(s.with(other, [&](CardLink& l) { return s.pos.complete(l, *no, 4000); }).local,
            LocalRefusal::kNotAuthorised);
  EXPECT_EQ(other.balance_fen(), 10'000u);
  SaleResult r = s.with(card, [&](CardLink& l) { return s.pos.complete(l, *no, 4000); });
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(card.balance_fen(), 10'000u - 3800u);  // 5 % merchant discount
  // Once only.
  s.loop.run_until(s.loop.now_us() + 60'000'000);
  EXPECT_EQ(s.with(card, [&](CardLink& l) { return s.pos.complete(l, *no, 4000); }).local,
            LocalRefusal::kNotAuthorised);
  EXPECT_EQ(card.balance_fen(), 6200u);
  const SettlementTotals t = s.pos.current_totals();
  EXPECT_EQ(t.completions, 1u);
  EXPECT_EQ(t.completion_fen, 3800);
  EXPECT_EQ(t.net_fen(), 3800);
  EXPECT_NE(s.pos.reprint(r.ok() ? *no + 1 : 0)->find("COMPLETION"), std::string::npos);
}

TEST(MerchantPosMore, PreAuthorisationRefusalsLapseAndCancel) {
  Shop2 s;
  CpuCard card(card_image(1, 1000), sim::Rng(1));
  EXPECT_EQ(s.with(card, [&](CardLink& l) { return s.pos.pre_authorise(l, 5000, "123456"); })
                .status()
                .code(),
            Errc::kInsufficientFunds);
  EXPECT_EQ(s.with(card, [&](CardLink& l) { return s.pos.pre_authorise(l, 500, "999999"); })
                .status()
                .code(),
            Errc::kRejected);
  auto no = s.with(card, [&](CardLink& l) { return s.pos.pre_authorise(l, 500, "123456"); });
  ASSERT_TRUE(no.is_ok());
  EXPECT_EQ(s.pos.cancel_pre_authorisation(*no, "0000").code(), Errc::kRejected);
  EXPECT_TRUE(s.pos.cancel_pre_authorisation(*no, "8888").is_ok());
  EXPECT_EQ(s.with(card, [&](CardLink& l) { return s.pos.complete(l, *no, 100); }).local,
            LocalRefusal::kNotAuthorised);
  // A pre-authorisation lapses after preauth_valid_s (7 days by default).
  auto late = s.with(card, [&](CardLink& l) { return s.pos.pre_authorise(l, 500, "123456"); });
  ASSERT_TRUE(late.is_ok());
  s.loop.run_until(s.loop.now_us() + 8LL * 86'400 * 1'000'000);
  EXPECT_EQ(s.with(card, [&](CardLink& l) { return s.pos.complete(l, *late, 100); }).local,
            LocalRefusal::kNotAuthorised);
  EXPECT_EQ(card.balance_fen(), 1000u);
  EXPECT_EQ(s.pos.statistics().pre_authorisations, 2u);
  EXPECT_EQ(s.pos.statistics().pre_authorisations_open, 0u);
}

TEST(MerchantPosMore, StatisticsCountEveryKindAcrossBatches) {
  Shop2 s;
  CpuCard card(card_image(1, 100'000), sim::Rng(1));
  for (std::uint32_t price : {1000u, 2000u}) {
    s.loop.run_until(s.loop.now_us() + 60'000'000);
    ASSERT_TRUE(s.with(card, [&](CardLink& l) { return s.pos.purchase(l, price, "123456"); }).ok());
  }
  s.pos.settle();
  s.loop.run_until(s.loop.now_us() + 60'000'000);
  ASSERT_TRUE(s.with(card, [&](CardLink& l) { return s.pos.purchase(l, 3000, "123456"); }).ok());
  EXPECT_EQ(s.with(card, [&](CardLink& l) { return s.pos.purchase(l, 10, "1"); }).local,
            LocalRefusal::kWrongPin);
  ASSERT_TRUE(s.pos.refund(1, 500, "8888").is_ok());
  const PosStatistics st = s.pos.statistics();
  EXPECT_EQ(st.lifetime.purchases, 3u);
  EXPECT_EQ(st.lifetime.purchase_fen, 950 + 1900 + 2850);
  EXPECT_EQ(st.lifetime.refunds, 1u);
  EXPECT_EQ(st.average_ticket_fen, (950 + 1900 + 2850) / 3);
  EXPECT_EQ(st.wrong_pins, 1u);
  EXPECT_EQ(st.sale.sales, 3u);
  EXPECT_EQ(s.pos.current_totals().purchases, 1u);  // this batch only
}

}  // namespace
}  // namespace citycard::devices
