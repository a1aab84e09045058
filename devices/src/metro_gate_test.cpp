#include "citycard/devices/metro_gate.h"

#include <gtest/gtest.h>

#include "citycard/devices/cpu_card.h"
#include "citycard/sim/event_loop.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

using protocol::CardType;
using protocol::MetroRecord;
using testing::card_image;
using testing::ScriptedChannel;

constexpr std::int64_t kMinute = 60'000'000;

std::int64_t origin() {
  return protocol::epoch2000_from_datetime(array_from_hex<7>("20240315060000"));
}

MetroGateConfig config(std::uint16_t station) {
  MetroGateConfig c;
  c.core.device_id = "G-" + std::to_string(station);
  c.core.operator_id = "BJ-METRO";
  c.core.calendar_origin_epoch2000_s = origin();
  c.station = station;
  c.position_m = {{1, 0}, {2, 5000}, {3, 11000}, {4, 40000}};
  c.fare.base = FarePolicy::Base::kDistance;
  c.fare.distance =
      DistanceTable{{{6000, 300}, {12000, 400}, {22000, 500}, {32000, 600}}, 20000, 100, 0};
  c.fare.card_type_discount_bp = {0, 5000, 10'000, 0};
  c.max_fare_fen = 1000;
  c.overstay_s = 4 * 3600;
  c.entry_min_balance_fen = 200;
  return c;
}

// Two gates of one network on one clock; each has its own PSAM (terminal id).
struct Network {
  Network()
      : psam_a(testing::psam_image(array_from_hex<6>("0000000000A1"))),
        psam_b(testing::psam_image(array_from_hex<6>("0000000000B2"))),
        channel(loop),
        storage_a(disk_a),
        storage_b(disk_b),
        station1(config(1), psam_a, loop, channel, storage_a),
        station3(config(3), psam_b, loop, channel, storage_b) {}
  SaleResult enter(MetroGate& g, CpuCard& card) {
    card.reset();
    DirectLink link(card);
    return g.enter(link);
  }
  SaleResult exit(MetroGate& g, CpuCard& card) {
    card.reset();
    DirectLink link(card);
    return g.exit(link);
  }
  sim::EventLoop loop;
  Psam psam_a, psam_b;
  ScriptedChannel channel;
  std::shared_ptr<MemoryDisk> disk_a = std::make_shared<MemoryDisk>();
  std::shared_ptr<MemoryDisk> disk_b = std::make_shared<MemoryDisk>();
  MemoryLogStorage storage_a, storage_b;
  MetroGate station1, station3;
};

TEST(MetroGate, EntryWritesTheMetroRecordAndExitChargesTheDistanceFare) {
  Network n;
  CpuCard card(card_image(1, 1000), sim::Rng(1));
  SaleResult r = n.enter(n.station1, card);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(card.balance_fen(), 1000u);
  EXPECT_EQ(r.record.amount_fen(), 0);
  auto m = MetroRecord::decode(card.metro_record(1));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->state, MetroRecord::kEntered);
  EXPECT_EQ(m->entry_station, 1);
  EXPECT_EQ(m->entry_datetime, array_from_hex<7>("20240315060000"));

  n.loop.run_until(25 * kMinute);
  r = n.exit(n.station3, card);  // 11 km: 400 fen
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.record.amount_fen(), 400);
  EXPECT_EQ(card.balance_fen(), 600u);
  m = MetroRecord::decode(card.metro_record(1));
  EXPECT_EQ(m->state, MetroRecord::kExited);
  EXPECT_EQ(m->exit_station, 3);
  EXPECT_EQ(m->fare_fen, 400u);
  EXPECT_EQ(card.travel_records().size(), 2u);
}

TEST(MetroGate, DistanceFareIsSymmetricAndDiscountedByCardType) {
  Network n;
  EXPECT_EQ(n.station1.distance_fare(1, 4, CardType::kAdult).charged_fen, 700u);  // 40 km
  EXPECT_EQ(n.station1.distance_fare(4, 1, CardType::kAdult).charged_fen, 700u);
  EXPECT_EQ(n.station1.distance_fare(1, 2, CardType::kStudent).charged_fen, 150u);
  EXPECT_EQ(n.station1.distance_fare(1, 99, CardType::kAdult).charged_fen, 1000u);
}

TEST(MetroGate, ExitWithoutEntryPaysTheMaximumFare) {
  Network n;
  CpuCard card(card_image(1, 2000), sim::Rng(1));
  const SaleResult r = n.exit(n.station3, card);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.record.amount_fen(), 1000);
  EXPECT_EQ(r.detail, "no entry on the card: maximum fare");
  // Leaving again at once: the record says exited, so still no entry (and the double tap
  // guard first).
  n.loop.run_until(kMinute);
  EXPECT_EQ(n.exit(n.station3, card).record.amount_fen(), 1000);
}

TEST(MetroGate, OverstayPaysTheMaximumFare) {
  Network n;
  CpuCard card(card_image(1, 2000), sim::Rng(1));
  ASSERT_TRUE(n.enter(n.station1, card).ok());
  n.loop.run_until(4 * 60 * kMinute);  // exactly the limit: still the distance fare
  CpuCard twin(card_image(2, 2000), sim::Rng(2));
  ASSERT_TRUE(n.enter(n.station1, twin).ok());
  SaleResult r = n.exit(n.station3, card);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.record.amount_fen(), 400);
  n.loop.run_until(8 * 60 * kMinute + 1'000'000);
  r = n.exit(n.station3, twin);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.record.amount_fen(), 1000);
  EXPECT_EQ(r.detail, "overstay: maximum fare");
}

TEST(MetroGate, EntryWithAnOpenTripClosesItAtTheMaximumFare) {
  Network n;
  CpuCard card(card_image(1, 2000), sim::Rng(1));
  ASSERT_TRUE(n.enter(n.station1, card).ok());
  n.loop.run_until(30 * kMinute);
  const SaleResult r = n.enter(n.station3, card);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.record.amount_fen(), 1000);
  EXPECT_EQ(card.balance_fen(), 1000u);
  const auto m = MetroRecord::decode(card.metro_record(1));
  EXPECT_EQ(m->state, MetroRecord::kEntered);
  EXPECT_EQ(m->entry_station, 3);
}

TEST(MetroGate, EntryNeedsTheMinimumBalanceAndTheCardMustBeValid) {
  Network n;
  CpuCard poor(card_image(1, 199), sim::Rng(1));
  EXPECT_EQ(n.enter(n.station1, poor).local, LocalRefusal::kBalanceTooLow);
  protocol::CardImage old = card_image(2, 1000);
  old.valid_to = protocol::date_bcd(2023, 1, 1);
  CpuCard expired(old, sim::Rng(2));
  EXPECT_EQ(n.enter(n.station1, expired).refusal, Refusal::kCardExpired);
  // Exit with too little for the fare: refused by the card, record unchanged.
  CpuCard card(card_image(3, 300), sim::Rng(3));
  ASSERT_TRUE(n.enter(n.station1, card).ok());
  n.loop.run_until(20 * kMinute);
  EXPECT_EQ(n.exit(n.station3, card).refusal, Refusal::kInsufficientBalance);
  EXPECT_EQ(MetroRecord::decode(card.metro_record(1))->state, MetroRecord::kEntered);
}

TEST(MetroGate, ATornExitIsRecoveredOnTheNextTapWithoutASecondDebit) {
  Network n;
  CpuCard card(card_image(1, 1000), sim::Rng(1));
  ASSERT_TRUE(n.enter(n.station1, card).ok());
  n.loop.run_until(20 * kMinute);
  card.reset();
  DirectLink inner(card);
  TearingLink torn(inner);
  // Exchanges: 6 reads, SELECT, 0x15, INITIALIZE, 2 UPDATEs, DEBIT = index 11.
  torn.tear_at(11, TearingLink::When::kAfterCommand);
  SaleResult r = n.station3.exit(torn);
  EXPECT_EQ(r.refusal, Refusal::kTorn) << r.detail;
  EXPECT_EQ(card.balance_fen(), 600u);  // the card had been debited
  n.loop.run_until(21 * kMinute);
  r = n.exit(n.station3, card);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_TRUE(r.recovered);
  EXPECT_EQ(card.balance_fen(), 600u);
}

}  // namespace
}  // namespace citycard::devices
