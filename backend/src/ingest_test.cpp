#include "citycard/backend/ingest.h"

#include <gtest/gtest.h>

#include "test_city.h"

namespace citycard::backend {
namespace {

namespace pw = protocol::wire;
using citycard::wire::SwipeRecord;
using citycard::wire::UploadBatch;
using testing::TestCard;
using testing::TestTerminal;

class IngestTest : public testing::BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    alice = issue(1'000);
    bob = issue(500);
    bus = add_terminal("bus-co", "15");
  }

  IngestResult upload(const UploadBatch& b) { return backend->upload(b); }
  std::int64_t swipes() { return *backend->ingest().swipe_count(); }
  std::int64_t postings() { return *backend->ledger().posting_count(); }

  // Everything money-related, to show that something changed nothing.
  struct Books {
    std::int64_t card_float, payable, alice_fen, bob_fen, swipes, postings;
    bool operator==(const Books&) const = default;
  };
  Books books() {
    return {balance(account::kCardFloat),
            balance(account::payable("bus-co")),
            card(alice).balance_fen,
            card(bob).balance_fen,
            swipes(),
            postings()};
  }

  TestCard alice, bob;
  TestTerminal bus;
};

TEST_F(IngestTest, ValidBatchIsAcceptedAndMoneyMovesFromCardFloatToPayable) {
  clock.advance_us(3LL * 86'400'000'000);  // settled on 2024-01-04
  auto batch = make_batch(bus, {purchase(alice, bus, 200, now()), purchase(bob, bus, 150, now()),
                                purchase(alice, bus, 200, now())});
  const IngestResult r = upload(batch);
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.ack.batch_no(), 1u);
  EXPECT_EQ(r.ack.accepted(), 3u);
  EXPECT_EQ(r.ack.duplicates(), 0u);
  EXPECT_EQ(r.ack.rejected(), 0u);
  EXPECT_EQ(r.ack.problems_size(), 0);
  EXPECT_FALSE(r.ack.batch_duplicate());

  EXPECT_EQ(balance(account::kCardFloat), -(1'000 + 500) + 550);
  EXPECT_EQ(balance(account::payable("bus-co")), -550);
  EXPECT_EQ(card(alice).balance_fen, 600);
  EXPECT_EQ(card(bob).balance_fen, 350);
  EXPECT_EQ(card(alice).last_counter, 1);
  EXPECT_EQ(card(bob).last_counter, 0);
  EXPECT_EQ(swipes(), 3);

  auto row = backend->ingest().find_swipe(alice.image.serial, 1);
  ASSERT_TRUE(row.is_ok() && row->has_value());
  const SwipeRow& s = **row;
  const SwipeRecord& rec = batch.records(2);
  EXPECT_EQ(s.settlement_date_yyyymmdd, 20240104);
  EXPECT_EQ(s.terminal_id, bus.psam.terminal_id);
  EXPECT_EQ(s.batch_no, 1u);
  EXPECT_EQ(s.card_counter, 1);
  EXPECT_EQ(s.balance_before_fen, 800);
  EXPECT_EQ(s.amount_fen, 200);
  EXPECT_EQ(s.fare_full_fen, 200);
  EXPECT_EQ(s.txn_type, protocol::txn::kPurchase);
  EXPECT_EQ(pw::field(s.tac), rec.tac());
  EXPECT_EQ(pw::field(s.datetime), rec.datetime());
  EXPECT_EQ(s.terminal_seq, 3u);
  EXPECT_EQ(s.key_version, alice.image.key_version);
  EXPECT_EQ(s.algorithm_id, 0);
  EXPECT_EQ(s.operator_id, "bus-co");
  EXPECT_EQ(s.route, "15");
  EXPECT_EQ(s.vehicle, "V-15");
  EXPECT_EQ(s.device, "D-1");
  EXPECT_EQ(s.driver, "driver-7");
  EXPECT_EQ(s.transfer_count, 0u);
  EXPECT_FALSE(s.suspicious);
  EXPECT_FALSE(s.reconciled);

  const IngestCounters& c = backend->ingest().counters();
  EXPECT_EQ(c.batches_accepted, 1u);
  EXPECT_EQ(c.records_accepted, 3u);
  EXPECT_EQ(c.amount_accepted_fen, 550);
}

TEST_F(IngestTest, ForgedTacIsRejectedWithBadTacAndNoMoneyMoves) {
  const Books before = books();
  SwipeRecord forged = purchase(alice, bus, 200, now());
  forged.set_amount_fen(2);  // a terminal trying to under-report... or a corrupted record
  SwipeRecord made_up = purchase(bob, bus, 100, now());
  made_up.set_tac(std::string("\x01\x02\x03\x04", 4));
  auto batch = make_batch(bus, {forged, made_up});  // the PSAM signs it: the batch is fine

  const IngestResult r = upload(batch);
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.ack.accepted(), 0u);
  EXPECT_EQ(r.ack.rejected(), 2u);
  ASSERT_EQ(r.ack.problems_size(), 2);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::BAD_TAC);
  EXPECT_EQ(r.ack.problems(0).index(), 0u);
  EXPECT_EQ(r.ack.problems(1).code(), citycard::wire::BAD_TAC);
  EXPECT_EQ(r.ack.problems(1).index(), 1u);
  EXPECT_EQ(books(), before);
  EXPECT_EQ(*backend->ingest().rejected_record_count(), 2);
  EXPECT_EQ(backend->ingest().counters().records_rejected, 2u);
}

TEST_F(IngestTest, TacFromAnotherIssuersKeysIsBadTac) {
  // The same card number personalised by a clearing centre with other keys: a clone.
  testing::FixedClock other_clock;
  BackendOptions other = options;
  other.key_seed = options.key_seed + 1;
  auto foreign = std::move(Backend::open(":memory:", other, other_clock)).value();
  CardParams p;
  p.opening_balance_fen = 1'000;
  TestCard clone{*foreign->issue_card(p), 0, 1'000};
  ASSERT_EQ(clone.image.serial, alice.image.serial);  // same allocation, other keys
  const Books before = books();
  const IngestResult r = upload(make_batch(bus, {purchase(clone, bus, 100, now())}));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.ack.problems_size(), 1);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::BAD_TAC);
  EXPECT_EQ(books(), before);
}

TEST_F(IngestTest, ReplayedBatchReturnsTheSameAckAndChangesNothing) {
  SwipeRecord bad = purchase(bob, bus, 100, now());
  bad.set_amount_fen(1);
  auto batch = make_batch(bus, {purchase(alice, bus, 200, now()), bad});
  const IngestResult first = upload(batch);
  ASSERT_TRUE(first.ok());
  const Books after_first = books();
  const auto rejected = *backend->ingest().rejected_record_count();

  const IngestResult again = upload(batch);
  ASSERT_TRUE(again.ok()) << again.message;
  EXPECT_TRUE(again.ack.batch_duplicate());
  EXPECT_EQ(again.ack.batch_no(), first.ack.batch_no());
  EXPECT_EQ(again.ack.accepted(), first.ack.accepted());
  EXPECT_EQ(again.ack.duplicates(), first.ack.duplicates());
  EXPECT_EQ(again.ack.rejected(), first.ack.rejected());
  ASSERT_EQ(again.ack.problems_size(), first.ack.problems_size());
  EXPECT_EQ(again.ack.problems(0).code(), first.ack.problems(0).code());
  EXPECT_EQ(books(), after_first);
  EXPECT_EQ(*backend->ingest().rejected_record_count(), rejected);
  EXPECT_EQ(*backend->ingest().batch_count(), 1);
  EXPECT_EQ(backend->ingest().counters().batches_duplicate, 1u);
  EXPECT_EQ(backend->ingest().counters().records_accepted, 1u);
}

TEST_F(IngestTest, BatchNumberReusedForOtherContentIsRejected) {
  auto batch = make_batch(bus, {purchase(alice, bus, 200, now())});
  ASSERT_TRUE(upload(batch).ok());
  const Books before = books();
  --bus.next_batch_no;  // a terminal that lost its batch counter
  auto other = make_batch(bus, {purchase(alice, bus, 300, now())});
  ASSERT_EQ(other.batch_no(), batch.batch_no());
  const IngestResult r = upload(other);
  EXPECT_EQ(r.code, citycard::wire::REJECTED);
  EXPECT_NE(r.message.find("already processed"), std::string::npos) << r.message;
  EXPECT_EQ(books(), before);
}

TEST_F(IngestTest, SameRecordInANewBatchIsDuplicate) {
  const SwipeRecord rec = purchase(alice, bus, 200, now());
  ASSERT_TRUE(upload(make_batch(bus, {rec})).ok());
  const Books before = books();
  const IngestResult r = upload(make_batch(bus, {rec, purchase(bob, bus, 50, now())}));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.ack.batch_duplicate());
  EXPECT_EQ(r.ack.accepted(), 1u);
  EXPECT_EQ(r.ack.duplicates(), 1u);
  ASSERT_EQ(r.ack.problems_size(), 1);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::DUPLICATE);
  EXPECT_EQ(balance(account::payable("bus-co")), -250);
  EXPECT_EQ(card(alice).balance_fen, before.alice_fen);
  EXPECT_EQ(swipes(), before.swipes + 1);
  EXPECT_EQ(*backend->ingest().rejected_record_count(), 0);  // duplicates are not rejects
}

TEST_F(IngestTest, SameRecordTwiceInOneBatchCountsOnce) {
  const SwipeRecord rec = purchase(alice, bus, 200, now());
  const IngestResult r = upload(make_batch(bus, {rec, rec}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.ack.accepted(), 1u);
  EXPECT_EQ(r.ack.duplicates(), 1u);
  EXPECT_EQ(card(alice).balance_fen, 800);
}

TEST_F(IngestTest, ReplayWithAnAlteredCounterIsCaughtByTheTerminalSequence) {
  // The TAC does not cover the card counter, so only (terminal, seq) recognises this replay.
  SwipeRecord rec = purchase(alice, bus, 200, now());
  ASSERT_TRUE(upload(make_batch(bus, {rec})).ok());
  const Books before = books();
  rec.set_card_counter(7);
  const IngestResult r = upload(make_batch(bus, {rec}));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.ack.problems_size(), 1);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::DUPLICATE);
  EXPECT_EQ(books(), before);
}

TEST_F(IngestTest, TwoTransactionsWithOneCounterAreRejectedAsAClone) {
  TestCard twin = alice;  // a copy of the card, keys and all
  TestTerminal bus2 = add_terminal("bus-co", "16");
  ASSERT_TRUE(upload(make_batch(bus, {purchase(alice, bus, 200, now())})).ok());
  const Books before = books();
  const IngestResult r = upload(make_batch(bus2, {purchase(twin, bus2, 300, now())}));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.ack.problems_size(), 1);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::REJECTED);
  EXPECT_NE(r.ack.problems(0).message().find("cloned"), std::string::npos);
  EXPECT_EQ(books(), before);
}

TEST_F(IngestTest, BadBatchSignatureRefusesTheWholeBatch) {
  auto batch = make_batch(bus, {purchase(alice, bus, 200, now()), purchase(bob, bus, 100, now())});
  const std::string good_mac = batch.batch_mac();
  std::string mac = good_mac;
  mac[0] = static_cast<char>(mac[0] ^ 0x01);
  batch.set_batch_mac(mac);
  const Books before = books();
  const IngestResult r = upload(batch);
  EXPECT_EQ(r.code, citycard::wire::BAD_SIGNATURE);
  EXPECT_EQ(books(), before);
  EXPECT_EQ(*backend->ingest().batch_count(), 0);
  EXPECT_EQ(*backend->ingest().rejected_record_count(), 0);
  EXPECT_EQ(backend->ingest().counters().batches_refused, 1u);
  // Not remembered: the same batch, correctly signed, is then processed.
  batch.set_batch_mac(good_mac);
  EXPECT_TRUE(upload(batch).ok());
  EXPECT_EQ(card(alice).balance_fen, 800);
}

TEST_F(IngestTest, RecordAddedAfterSigningOrWrongTotalsRefuseTheBatch) {
  auto batch = make_batch(bus, {purchase(alice, bus, 200, now())});
  *batch.add_records() = purchase(bob, bus, 100, now());  // smuggled in after the PSAM signed
  EXPECT_EQ(upload(batch).code, citycard::wire::BAD_SIGNATURE);

  // Signed by the right PSAM, but its totals lie about its records.
  auto lying = make_batch(bus, {purchase(alice, bus, 200, now())});
  lying.set_total_amount_fen(20);
  lying.set_batch_mac(
      pw::field(protocol::crypto::tdes_mac(bus.psam.batch_key, pw::batch_mac_input(lying))));
  const IngestResult r = upload(lying);
  EXPECT_EQ(r.code, citycard::wire::BAD_SIGNATURE);
  EXPECT_NE(r.message.find("add up"), std::string::npos) << r.message;
  EXPECT_EQ(swipes(), 0);
}

TEST_F(IngestTest, BatchSignedWithAnotherTerminalsKeyIsRefused) {
  TestTerminal other = add_terminal("taxi-co", "");
  auto batch = make_batch(bus, {purchase(alice, bus, 200, now())});
  testing::sign(batch, other.psam.batch_key);
  EXPECT_EQ(upload(batch).code, citycard::wire::BAD_SIGNATURE);
  EXPECT_EQ(swipes(), 0);
}

TEST_F(IngestTest, UnknownTerminalRefusesTheBatch) {
  TestTerminal ghost = bus;
  ghost.psam.terminal_id = array_from_hex<6>("999999999999");
  const Books before = books();
  const IngestResult r = upload(make_batch(ghost, {purchase(alice, ghost, 200, now())}));
  EXPECT_EQ(r.code, citycard::wire::UNKNOWN_TERMINAL);
  EXPECT_EQ(books(), before);
  EXPECT_EQ(*backend->ingest().batch_count(), 0);
}

TEST_F(IngestTest, UnknownCardIsRejectedAndNothingChanges) {
  TestCard stranger = alice;
  stranger.image.serial = array_from_hex<8>("9999000000000001");
  const Books before = books();
  const IngestResult r = upload(make_batch(bus, {purchase(stranger, bus, 200, now())}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.ack.rejected(), 1u);
  ASSERT_EQ(r.ack.problems_size(), 1);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::UNKNOWN_CARD);
  EXPECT_EQ(books(), before);
  EXPECT_EQ(*backend->ingest().rejected_record_count(), 1);
}

TEST_F(IngestTest, CounterGapIsAcceptedButSuspicious) {
  ASSERT_TRUE(upload(make_batch(bus, {purchase(alice, bus, 100, now())})).ok());
  purchase(alice, bus, 100, now());  // this record is lost on the way
  const IngestResult r = upload(make_batch(bus, {purchase(alice, bus, 100, now())}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.ack.accepted(), 1u);
  ASSERT_EQ(r.ack.problems_size(), 1);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::SUSPICIOUS);
  const std::string& why = r.ack.problems(0).message();
  EXPECT_NE(why.find("counter gap: expected 1, got 2"), std::string::npos) << why;
  EXPECT_NE(why.find("balance chain"), std::string::npos) << why;

  auto row = backend->ingest().find_swipe(alice.image.serial, 2);
  ASSERT_TRUE(row.is_ok() && row->has_value());
  EXPECT_TRUE((*row)->suspicious);
  EXPECT_NE((*row)->suspicion.find("counter gap"), std::string::npos);
  EXPECT_EQ(*backend->ingest().suspicious_count(), 1);
  EXPECT_EQ(backend->ingest().counters().records_suspicious, 1u);
  // Money moved for what was cleared; the lost record is still owed by the card.
  EXPECT_EQ(card(alice).balance_fen, 800);
  EXPECT_EQ(card(alice).last_counter, 2);
}

TEST_F(IngestTest, LateRecordAfterALaterOneIsSuspiciousAndClosesTheGap) {
  TestTerminal bus2 = add_terminal("bus-co", "16");
  const SwipeRecord early = purchase(alice, bus, 100, now());
  const SwipeRecord later = purchase(alice, bus2, 100, now());
  ASSERT_TRUE(upload(make_batch(bus2, {later})).ok());  // bus2 uploads first
  const IngestResult r = upload(make_batch(bus, {early}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.ack.accepted(), 1u);
  ASSERT_EQ(r.ack.problems_size(), 1);
  EXPECT_NE(r.ack.problems(0).message().find("counter went back"), std::string::npos);
  EXPECT_EQ(card(alice).balance_fen, 800);
  EXPECT_EQ(card(alice).last_counter, 1);  // not lowered by the late record
}

// The reorder window (IngestOptions::reorder_window_us): a card's taps on two buses arrive
// out of order; the gap closes when the missing tap arrives and nothing is flagged.
class ReorderWindowTest : public IngestTest {
 protected:
  void SetUp() override {
    options.ingest.reorder_window_us = 3'600'000'000;  // an hour
    IngestTest::SetUp();
  }
};

TEST_F(ReorderWindowTest, TapsArrivingOutOfOrderFromTwoBusesAreNotSuspicious) {
  TestTerminal bus2 = add_terminal("bus-co", "16");
  const SwipeRecord first = purchase(alice, bus, 100, now());
  const SwipeRecord second = purchase(alice, bus2, 150, now());
  const SwipeRecord third = purchase(alice, bus2, 200, now());
  const IngestResult r2 = upload(make_batch(bus2, {second, third}));  // bus2 uploads first
  ASSERT_TRUE(r2.ok()) << r2.message;
  EXPECT_EQ(r2.ack.problems_size(), 0);
  EXPECT_EQ(*backend->ingest().open_gap_count(), 1);
  clock.advance_us(600'000'000);  // ten minutes later, within the window
  const IngestResult r1 = upload(make_batch(bus, {first}));
  ASSERT_TRUE(r1.ok()) << r1.message;
  EXPECT_EQ(r1.ack.accepted(), 1u);
  EXPECT_EQ(r1.ack.problems_size(), 0) << r1.ack.problems(0).message();
  EXPECT_EQ(*backend->ingest().open_gap_count(), 0);
  EXPECT_EQ(*backend->ingest().suspicious_count(), 0);
  EXPECT_EQ(backend->ingest().counters().gaps_held, 1u);
  EXPECT_EQ(backend->ingest().counters().gaps_closed, 1u);
  // Past the window nothing is flagged afterwards either.
  clock.advance_us(7'200'000'000);
  EXPECT_EQ(*backend->ingest().flag_persistent_gaps(), 0);
  EXPECT_EQ(*backend->ingest().suspicious_count(), 0);
  EXPECT_EQ(card(alice).balance_fen, 1'000 - 450);
  EXPECT_EQ(card(alice).last_counter, 2);
}

TEST_F(ReorderWindowTest, AGapThatPersistsPastTheWindowIsFlaggedAtTheNextBatch) {
  ASSERT_TRUE(upload(make_batch(bus, {purchase(alice, bus, 100, now())})).ok());
  purchase(alice, bus, 100, now());  // this record is lost for good
  const IngestResult r = upload(make_batch(bus, {purchase(alice, bus, 100, now())}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.ack.problems_size(), 0);  // held, not flagged yet
  EXPECT_EQ(*backend->ingest().open_gap_count(), 1);
  EXPECT_EQ(*backend->ingest().suspicious_count(), 0);
  clock.advance_us(3'600'000'000);  // the window is over
  ASSERT_TRUE(upload(make_batch(bus, {purchase(bob, bus, 50, now())})).ok());
  EXPECT_EQ(*backend->ingest().open_gap_count(), 0);
  EXPECT_EQ(*backend->ingest().suspicious_count(), 1);
  EXPECT_EQ(backend->ingest().counters().gaps_flagged, 1u);
  EXPECT_EQ(backend->ingest().counters().records_suspicious, 1u);
  auto row = backend->ingest().find_swipe(alice.image.serial, 2);
  ASSERT_TRUE(row.is_ok() && row->has_value());
  EXPECT_TRUE((*row)->suspicious);
  EXPECT_NE((*row)->suspicion.find("counter gap: counter 1 never arrived"), std::string::npos)
      << (*row)->suspicion;
}

TEST_F(ReorderWindowTest, PollFlagsAPersistingGapWithoutAnotherUpload) {
  ASSERT_TRUE(upload(make_batch(bus, {purchase(alice, bus, 100, now())})).ok());
  purchase(alice, bus, 100, now());
  purchase(alice, bus, 100, now());
  ASSERT_TRUE(upload(make_batch(bus, {purchase(alice, bus, 100, now())})).ok());
  EXPECT_EQ(*backend->ingest().open_gap_count(), 2);
  ASSERT_TRUE(backend->poll().is_ok());
  EXPECT_EQ(*backend->ingest().suspicious_count(), 0);  // still within the window
  clock.advance_us(3'600'000'000);
  ASSERT_TRUE(backend->poll().is_ok());
  EXPECT_EQ(*backend->ingest().suspicious_count(), 1);
  auto row = backend->ingest().find_swipe(alice.image.serial, 3);
  ASSERT_TRUE(row.is_ok() && row->has_value());
  EXPECT_NE((*row)->suspicion.find("counter 1 never"), std::string::npos) << (*row)->suspicion;
  EXPECT_NE((*row)->suspicion.find("counter 2 never"), std::string::npos) << (*row)->suspicion;
}

TEST_F(ReorderWindowTest, ALateRecordWhoseBalanceDoesNotChainIsStillSuspicious) {
  TestTerminal bus2 = add_terminal("bus-co", "16");
  SwipeRecord first = purchase(alice, bus, 100, now());
  const SwipeRecord second = purchase(alice, bus2, 100, now());
  ASSERT_TRUE(upload(make_batch(bus2, {second})).ok());
  first.set_balance_before_fen(5'000);  // not covered by the TAC: the terminal misreported
  const IngestResult r = upload(make_batch(bus, {first}));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.ack.problems_size(), 1);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::SUSPICIOUS);
  EXPECT_NE(r.ack.problems(0).message().find("balance chain broken"), std::string::npos)
      << r.ack.problems(0).message();
  EXPECT_EQ(r.ack.problems(0).message().find("counter went back"), std::string::npos);
  EXPECT_EQ(*backend->ingest().open_gap_count(), 0);
}

TEST_F(ReorderWindowTest, AGapWiderThanTheLimitIsFlaggedAtOnce) {
  ASSERT_TRUE(upload(make_batch(bus, {purchase(alice, bus, 10, now())})).ok());
  for (int i = 0; i < 17; ++i) purchase(alice, bus, 10, now());  // 17 > reorder_gap_max
  const IngestResult r = upload(make_batch(bus, {purchase(alice, bus, 10, now())}));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.ack.problems_size(), 1);
  EXPECT_NE(r.ack.problems(0).message().find("counter gap: expected 1, got 18"), std::string::npos)
      << r.ack.problems(0).message();
  EXPECT_EQ(*backend->ingest().open_gap_count(), 0);
}

TEST_F(IngestTest, BalanceChainBreakAloneIsSuspicious) {
  SwipeRecord r0 = purchase(alice, bus, 100, now());
  r0.set_balance_before_fen(5'000);  // not covered by the TAC: the terminal misreported
  const IngestResult r = upload(make_batch(bus, {r0}));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.ack.problems_size(), 1);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::SUSPICIOUS);
  EXPECT_EQ(r.ack.problems(0).message().find("counter"), std::string::npos);
  EXPECT_EQ(card(alice).balance_fen, 900);
}

TEST_F(IngestTest, MalformedRecordsAreRejectedAndTheRestOfTheBatchStands) {
  SwipeRecord short_serial = purchase(alice, bus, 10, now());
  short_serial.set_card_serial("1234");
  SwipeRecord bad_time = purchase(alice, bus, 10, now());
  bad_time.set_datetime(std::string("\x20\x24\x13\x01\x00\x00\x00", 7));
  SwipeRecord negative = purchase(alice, bus, 10, now());
  negative.set_amount_fen(-10);
  SwipeRecord load = purchase(alice, bus, 10, now());
  load.set_txn_type(protocol::txn::kLoadEp);
  SwipeRecord big_counter = purchase(alice, bus, 10, now());
  big_counter.set_card_counter(70'000);
  SwipeRecord long_route = purchase(alice, bus, 10, now());
  long_route.set_route(std::string(65, 'x'));
  SwipeRecord bad_alg = purchase(alice, bus, 10, now());
  bad_alg.set_algorithm_id(3);
  TestCard fresh = bob;
  const SwipeRecord good = purchase(fresh, bus, 10, now());
  const IngestResult r = upload(make_batch(
      bus, {short_serial, bad_time, negative, load, big_counter, long_route, bad_alg, good}));
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.ack.accepted(), 1u);
  EXPECT_EQ(r.ack.rejected(), 7u);
  ASSERT_EQ(r.ack.problems_size(), 7);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(r.ack.problems(i).code(), citycard::wire::MALFORMED) << r.ack.problems(i).message();
    EXPECT_EQ(r.ack.problems(i).index(), static_cast<std::uint32_t>(i));
  }
  EXPECT_EQ(card(bob).balance_fen, 490);
  EXPECT_EQ(card(alice).balance_fen, 1'000);
}

TEST_F(IngestTest, RecordFromAnotherTerminalIsRejected) {
  TestTerminal bus2 = add_terminal("bus-co", "16");
  const SwipeRecord foreign = purchase(alice, bus2, 100, now());
  const IngestResult r = upload(make_batch(bus, {foreign}));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.ack.problems_size(), 1);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::REJECTED);
  EXPECT_EQ(card(alice).balance_fen, 1'000);
}

TEST_F(IngestTest, PayableGoesToTheRegisteredOperatorAndAMismatchIsFlagged) {
  SwipeRecord r0 = purchase(alice, bus, 100, now());
  r0.set_operator_id("someone-else");
  const IngestResult r = upload(make_batch(bus, {r0}));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.ack.problems_size(), 1);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::SUSPICIOUS);
  EXPECT_EQ(balance(account::payable("bus-co")), -100);
  EXPECT_EQ(backend->ledger().balance(account::payable("someone-else")).status().code(),
            Errc::kNotFound);
}

TEST_F(IngestTest, ZeroFareIsClearedWithoutAPosting) {
  const auto p = postings();
  const IngestResult r = upload(make_batch(bus, {purchase(alice, bus, 0, now())}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.ack.accepted(), 1u);
  EXPECT_EQ(postings(), p);
  EXPECT_EQ(swipes(), 1);
  EXPECT_EQ(card(alice).last_counter, 0);
}

TEST_F(IngestTest, OversizedBatchIsRefusedWhole) {
  options.ingest.max_batch_records = 3;
  open(":memory:");
  alice = issue(1'000);
  bus = add_terminal("bus-co", "15");
  std::vector<SwipeRecord> recs;
  for (int i = 0; i < 4; ++i) recs.push_back(purchase(alice, bus, 1, now()));
  const IngestResult r = upload(make_batch(bus, recs));
  EXPECT_EQ(r.code, citycard::wire::REJECTED);
  EXPECT_NE(r.message.find("limit"), std::string::npos);
  EXPECT_EQ(swipes(), 0);
  recs.pop_back();
  EXPECT_TRUE(upload(make_batch(bus, recs)).ok());
}

TEST_F(IngestTest, AFailureMidBatchLeavesNoneOfIt) {
  // Storage fails on the second record (an injected fault: a trigger that aborts).
  ASSERT_TRUE(backend->store()
                  .exec("CREATE TEMP TRIGGER fail_777 BEFORE INSERT ON swipes "
                        "WHEN NEW.amount_fen = 777 BEGIN SELECT RAISE(ABORT, 'injected'); END")
                  .is_ok());
  const Books before = books();
  auto batch = make_batch(bus, {purchase(alice, bus, 100, now()), purchase(bob, bus, 777, now())});
  const IngestResult r = upload(batch);
  EXPECT_EQ(r.code, citycard::wire::INTERNAL);
  EXPECT_NE(r.message.find("injected"), std::string::npos) << r.message;
  EXPECT_EQ(books(), before);  // alice's record, processed first, is gone too
  EXPECT_EQ(*backend->ingest().batch_count(), 0);
  EXPECT_EQ(backend->ingest().counters().records_accepted, 0u);
  EXPECT_FALSE(backend->store().in_transaction());

  ASSERT_TRUE(backend->store().exec("DROP TRIGGER fail_777").is_ok());
  const IngestResult retry = upload(batch);
  ASSERT_TRUE(retry.ok()) << retry.message;
  EXPECT_EQ(retry.ack.accepted(), 2u);
  EXPECT_FALSE(retry.ack.batch_duplicate());
}

TEST_F(IngestTest, OneBatchIsOnePostingAndEverySwipeRowPointsAtIt) {
  const auto before = postings();
  SwipeRecord bad = purchase(bob, bus, 100, now());
  bad.set_amount_fen(99);  // does not verify: the first, optimistic pass is redone
  const IngestResult r =
      upload(make_batch(bus, {purchase(alice, bus, 200, now()), bad, purchase(alice, bus, 0, now()),
                              purchase(bob, bus, 150, now())}));
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.ack.accepted(), 3u);
  EXPECT_EQ(r.ack.rejected(), 1u);
  EXPECT_EQ(postings(), before + 1);
  EXPECT_EQ(balance(account::payable("bus-co")), -350);
  auto q = backend->store().query(
      "SELECT count(*), count(DISTINCT posting_id), count(posting_id) FROM swipes");
  ASSERT_TRUE(*q.step());
  EXPECT_EQ(q.column_int64(0), 3);  // three rows...
  EXPECT_EQ(q.column_int64(1), 1);  // ...one posting...
  EXPECT_EQ(q.column_int64(2), 2);  // ...which the zero fare does not point at
  EXPECT_EQ(*backend->ingest().rejected_record_count(), 1);
}

TEST_F(IngestTest, ARepeatedRecordInsideOneBatchIsADuplicateAndTheOtherCounterUseIsRejected) {
  const SwipeRecord r0 = purchase(alice, bus, 100, now());
  --alice.counter;  // a clone of the card: a valid TAC for the same counter, a new sequence
  alice.balance_fen += 100;
  const SwipeRecord clone = purchase(alice, bus, 100, now());
  const IngestResult r = upload(make_batch(bus, {r0, r0, clone}));
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.ack.accepted(), 1u);
  ASSERT_EQ(r.ack.problems_size(), 2);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::DUPLICATE);
  EXPECT_EQ(r.ack.problems(1).code(), citycard::wire::REJECTED);
  EXPECT_EQ(card(alice).balance_fen, 900);
  EXPECT_EQ(balance(account::payable("bus-co")), -100);
}

// A hook that rejects 7-fen purchases, flags 8-fen ones and records what it was told.
class RecordingHook : public SwipeHook {
 public:
  Result<SwipeCheck> check_swipe(const SwipeFacts& f) override {
    checked.push_back(f.ref);
    SwipeCheck c;
    if (f.amount_fen == 7) {
      c.reject = true;
      c.reject_reason = "seven is unlucky";
    }
    if (f.amount_fen == 8) c.reasons.push_back("eight is odd");
    balances_seen.push_back(f.card.balance_fen);
    return c;
  }
  Status swipe_accepted(const SwipeFacts& f, std::int64_t swipe_id) override {
    accepted.emplace_back(f.ref, swipe_id);
    return Status::ok();
  }
  std::vector<std::string> checked;
  std::vector<std::int64_t> balances_seen;
  std::vector<std::pair<std::string, std::int64_t>> accepted;
};

TEST_F(IngestTest, SwipeHookCanRejectAndFlagAndSeesEachStoredSwipe) {
  RecordingHook hook;
  backend->ingest().set_swipe_hook(&hook);
  const IngestResult r =
      upload(make_batch(bus, {purchase(alice, bus, 100, now()), purchase(alice, bus, 7, now()),
                              purchase(bob, bus, 8, now())}));
  backend->ingest().set_swipe_hook(nullptr);
  ASSERT_TRUE(r.ok()) << r.message;
  ASSERT_EQ(r.ack.problems_size(), 2);
  EXPECT_EQ(r.ack.problems(0).code(), citycard::wire::REJECTED);
  EXPECT_NE(r.ack.problems(0).message().find("seven is unlucky"), std::string::npos);
  EXPECT_EQ(r.ack.problems(1).code(), citycard::wire::SUSPICIOUS);
  EXPECT_NE(r.ack.problems(1).message().find("eight is odd"), std::string::npos);
  EXPECT_EQ(swipes(), 2);
  EXPECT_EQ(*backend->ingest().suspicious_count(), 1);
  EXPECT_EQ(card(alice).balance_fen, 900);
  EXPECT_EQ(card(bob).balance_fen, 492);
  // The second pass (the posting bet lost on the rejected 7 fen) told the hook again: the
  // first pass's effects were rolled back with it.
  ASSERT_EQ(hook.accepted.size(), 4u);
  const auto& last = hook.accepted[3];
  EXPECT_EQ(last.first, to_hex(bob.image.serial) + "#0");
  auto q = backend->store().query("SELECT amount_fen FROM swipes WHERE id = ?1");
  q.bind(1, last.second);
  ASSERT_TRUE(*q.step());
  EXPECT_EQ(q.column_int64(0), 8);
  // Alice's second purchase was checked against her balance after the first.
  EXPECT_EQ(hook.balances_seen[1], 900);
}

}  // namespace
}  // namespace citycard::backend
