#include "citycard/devices/m1_purse.h"

#include <gtest/gtest.h>

#include "test_support.h"

namespace citycard::devices {
namespace {

namespace m1 = protocol::m1;
using testing::kTerminal;

const protocol::DateTime7 kWhen = array_from_hex<7>("20240315081530");

M1PurseOptions options() {
  M1PurseOptions o;
  o.terminal = kTerminal;
  o.m1_master = testing::issuer_keys().m1;
  return o;
}

std::int32_t value_of(const M1Card& card, std::uint8_t block) {
  const auto v = m1::decode_value(card.block(block));
  return v ? v->value : -1;
}

// The card rests in a consistent state: both process blocks done and equal, purse = backup.
void expect_consistent(const M1Card& card) {
  const auto a = m1::ProcessInfo::decode(card.block(24));
  const auto b = m1::ProcessInfo::decode(card.block(25));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->state, m1::ProcessInfo::kDone);
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(value_of(card, 8), value_of(card, 9));
}

TEST(M1Purse, ADebitFollowsTheWriteOrderAndLeavesTheCardConsistent) {
  M1PurseEngine engine(options());
  M1Card card(testing::m1_image(0x11223344, 1000));
  std::vector<std::string> steps;
  DirectM1Link link(card, [&](ByteView c, ByteView, std::int64_t) {
    if (c[0] == m1::cmd::kWrite || c[0] == m1::cmd::kDecrement || c[0] == m1::cmd::kRestore ||
        c[0] == m1::cmd::kTransfer) {
      steps.push_back(to_hex(ByteView(c.data(), 2)));
    }
  });
  const M1Result r = engine.transact(link, M1Request{200, kWhen});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_FALSE(r.recovered);
  EXPECT_EQ(r.txn.counter, 1);
  EXPECT_EQ(r.txn.balance_before_fen, 1000u);
  EXPECT_EQ(r.txn.amount_fen, 200u);
  // 24, record (slot 0 = block 12), 25, DEC+TRANSFER 8, RESTORE 8 + TRANSFER 9, 24, 25.
  EXPECT_EQ(steps, (std::vector<std::string>{"a018", "a00c", "a019", "c008", "b008", "c208", "b009",
                                             "a018", "a019"}));
  EXPECT_EQ(value_of(card, 8), 800);
  expect_consistent(card);
  const auto rec = m1::Record::decode(card.block(12));
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->counter, 1);
  EXPECT_EQ(rec->balance_after_fen, 800u);
  EXPECT_EQ(rec->terminal_low, 0x0405);
  EXPECT_GT(r.duration_us, 0);

  const M1Result second = engine.transact(link, M1Request{300, kWhen});
  ASSERT_TRUE(second.ok()) << second.detail;
  EXPECT_EQ(second.txn.counter, 2);
  EXPECT_EQ(m1::Record::decode(card.block(13))->counter, 2) << "the next cyclic slot";
  EXPECT_EQ(value_of(card, 8), 500);
}

TEST(M1Purse, ALoadIncrementsWithKeyB) {
  M1PurseEngine engine(options());
  M1Card card(testing::m1_image(0x11223345, 1000));
  DirectM1Link link(card);
  const M1Result r = engine.transact(link, M1Request{5000, kWhen, protocol::txn::kLoadEp});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(value_of(card, 8), 6000);
  expect_consistent(card);
  EXPECT_EQ(engine.transact(link, M1Request{100'000, kWhen, protocol::txn::kLoadEp}).refusal,
            Refusal::kCardError)
      << "past the balance limit";
}

TEST(M1Purse, RefusalsChangeNothing) {
  M1PurseEngine engine(options());
  M1Card card(testing::m1_image(0x11223346, 100));
  DirectM1Link link(card);
  EXPECT_EQ(engine.transact(link, M1Request{200, kWhen}).refusal, Refusal::kInsufficientBalance);
  EXPECT_EQ(engine.transact(link, M1Request{50, array_from_hex<7>("20310101000000")}).refusal,
            Refusal::kCardExpired);
  M1PurseOptions wrong = options();
  wrong.m1_master[0] ^= 0x10;
  M1PurseEngine stranger(wrong);
  const M1Result r = stranger.transact(link, M1Request{50, kWhen});
  EXPECT_EQ(r.refusal, Refusal::kCardError) << "a terminal without this issuer's keys";
  EXPECT_EQ(value_of(card, 8), 100);
  expect_consistent(card);
}

// Tear after the purse was decremented, before its backup: the next tap rolls forward.
TEST(M1Purse, ATearAfterTheDecrementIsRolledForwardAndCountedOnce) {
  M1PurseEngine engine(options());
  M1Card card(testing::m1_image(0x11223347, 1000));
  std::uint64_t transfer_8 = 0;
  {
    std::uint64_t n = 0;
    M1Card probe(testing::m1_image(0x11223347, 1000));
    M1PurseEngine e(options());
    DirectM1Link l(probe, [&](ByteView c, ByteView, std::int64_t) {
      if (c[0] == m1::cmd::kTransfer && c[1] == 8 && transfer_8 == 0) transfer_8 = n;
      ++n;
    });
    ASSERT_TRUE(e.transact(l, M1Request{200, kWhen}).ok());
  }
  {
    DirectM1Link direct(card);
    TearingM1Link link(direct);
    link.tear_at(transfer_8 + 1, TearingM1Link::When::kBeforeCommand);
    EXPECT_EQ(engine.transact(link, M1Request{200, kWhen}).refusal, Refusal::kTorn);
  }
  EXPECT_EQ(value_of(card, 8), 800);
  EXPECT_EQ(value_of(card, 9), 1000) << "the backup still holds the balance before";
  card.reset();
  DirectM1Link again(card);
  const M1Result r = engine.transact(again, M1Request{200, kWhen});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_TRUE(r.recovered);
  EXPECT_EQ(r.txn.counter, 1);
  EXPECT_EQ(r.txn.amount_fen, 200u);
  EXPECT_EQ(r.txn.epoch2000_s,
            static_cast<std::uint32_t>(protocol::epoch2000_from_datetime(kWhen)));
  EXPECT_EQ(value_of(card, 8), 800) << "no second debit";
  expect_consistent(card);
  EXPECT_EQ(engine.counters().rolled_forward, 1u);
  EXPECT_EQ(engine.grey_records(), 0u);
}

// Tear right after S1: the next tap rolls back and then debits once.
TEST(M1Purse, ATearAfterTheFirstProcessWriteIsRolledBack) {
  M1PurseEngine engine(options());
  M1Card card(testing::m1_image(0x11223348, 1000));
  {
    DirectM1Link direct(card);
    TearingM1Link link(direct);
    // AUTH 24, READ 24, READ 25, AUTH 8, READ 8, READ 9, AUTH 4, READ 4, READ 5, AUTH 24,
    // WRITE 24 (S1): tear after it.
    link.tear_at(10, TearingM1Link::When::kAfterCommand);
    EXPECT_EQ(engine.transact(link, M1Request{200, kWhen}).refusal, Refusal::kTorn);
  }
  EXPECT_EQ(m1::ProcessInfo::decode(card.block(24))->state, m1::ProcessInfo::kInProgress);
  card.reset();
  DirectM1Link again(card);
  const M1Result r = engine.transact(again, M1Request{200, kWhen});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_FALSE(r.recovered);
  EXPECT_TRUE(r.rolled_back);
  EXPECT_EQ(r.txn.counter, 1) << "the rolled-back counter is used again";
  EXPECT_EQ(value_of(card, 8), 800);
  expect_consistent(card);
  EXPECT_EQ(engine.counters().cleared, 1u);
}

}  // namespace
}  // namespace citycard::devices
