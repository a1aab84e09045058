#include "citycard/devices/bus_terminal.h"

#include <gtest/gtest.h>

#include "citycard/devices/blacklist_cache.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/sim/event_loop.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

namespace wire = protocol::wire;
using protocol::CardType;
using testing::card_image;
using testing::ScriptedChannel;

std::int64_t origin() {  // 2024-03-15 06:00:00 at clock zero
  return protocol::epoch2000_from_datetime(array_from_hex<7>("20240315060000"));
}
constexpr std::int64_t kMinute = 60'000'000;

BusTerminalConfig config() {
  BusTerminalConfig c;
  c.core.device_id = "BV-7";
  c.core.operator_id = "SH-BUS-1";
  c.core.calendar_origin_epoch2000_s = origin();
  c.core.queue.batch_records_max = 4;
  c.fare.flat_fen = 200;
  c.fare.transfer = {90 * 60, 100, std::nullopt};
  c.fare.card_type_discount_bp = {0, 5000, 10'000, 0};
  return c;
}

protocol::CardImage typed(std::uint64_t n, std::uint32_t balance, CardType type) {
  protocol::CardImage i = card_image(n, balance);
  i.card_type = type;
  return i;
}

struct Bus {
  explicit Bus(BusTerminalConfig c = config(),
               const protocol::TerminalId& terminal = testing::kTerminal)
      : psam(testing::psam_image(terminal)),
        channel(loop),
        storage(disk),
        bus(std::move(c), psam, loop, channel, storage) {
    bus.assign("71", "沪A-12345");
  }
  template <class Card>
  SaleResult tap(Card& card) {
    card.reset();
    DirectLink link(card);
    return bus.tap(link);
  }
  Status sign_in(CpuCard& card) {
    card.reset();
    DirectLink link(card);
    return bus.sign_in(link);
  }
  Status sign_out(CpuCard& card) {
    card.reset();
    DirectLink link(card);
    return bus.sign_out(link);
  }
  sim::EventLoop loop;
  Psam psam;
  ScriptedChannel channel;
  std::shared_ptr<MemoryDisk> disk = std::make_shared<MemoryDisk>();
  MemoryLogStorage storage;
  BusTerminal bus;
};

TEST(BusTerminal, NoSalesWithoutADriverAndTheDriverGoesIntoEveryRecord) {
  Bus b;
  CpuCard rider(card_image(1, 1000), sim::Rng(1));
  SaleResult r = b.tap(rider);
  EXPECT_EQ(r.local, LocalRefusal::kNoDriver);
  EXPECT_EQ(rider.balance_fen(), 1000u);

  CpuCard adult_not_driver(card_image(2, 0), sim::Rng(2));
  EXPECT_EQ(b.sign_in(adult_not_driver).code(), Errc::kRejected);
  CpuCard driver(typed(900, 0, CardType::kStaff), sim::Rng(3));
  ASSERT_TRUE(b.sign_in(driver).is_ok());
  ASSERT_TRUE(b.bus.driver());

  r = b.tap(rider);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(rider.balance_fen(), 800u);
  EXPECT_EQ(r.record.driver(), *b.bus.driver());
  EXPECT_EQ(r.record.route(), "71");
  EXPECT_EQ(r.record.vehicle(), "沪A-12345");
  EXPECT_EQ(r.record.device(), "BV-7");
  EXPECT_EQ(r.record.txn_type(), protocol::txn::kCappPurchase);
  EXPECT_EQ(r.record.fare_full_fen(), 200);

  // Another staff card cannot take over, nor sign the driver out.
  CpuCard other(typed(901, 0, CardType::kStaff), sim::Rng(4));
  EXPECT_EQ(b.sign_in(other).code(), Errc::kRejected);
  EXPECT_EQ(b.sign_out(other).code(), Errc::kRejected);
  ASSERT_TRUE(b.sign_out(driver).is_ok());
  b.loop.run_until(kMinute);
  CpuCard rider2(card_image(3, 1000), sim::Rng(5));
  EXPECT_EQ(b.tap(rider2).local, LocalRefusal::kNoDriver);
}

TEST(BusTerminal, RosterLimitsWhichStaffCardsMayDrive) {
  BusTerminalConfig c = config();
  c.driver_roster = {testing::serial_of(900)};
  Bus b(c);
  CpuCard stranger(typed(901, 0, CardType::kStaff), sim::Rng(4));
  EXPECT_EQ(b.sign_in(stranger).code(), Errc::kRejected);
  CpuCard driver(typed(900, 0, CardType::kStaff), sim::Rng(3));
  EXPECT_TRUE(b.sign_in(driver).is_ok());
}

TEST(BusTerminal, WritesTheTravelRecordAndTheNextBusGivesTheTransferDiscount) {
  Bus first;
  Bus second(config(), array_from_hex<6>("000102030499"));
  CpuCard driver(typed(900, 0, CardType::kStaff), sim::Rng(3));
  ASSERT_TRUE(first.sign_in(driver).is_ok());
  ASSERT_TRUE(second.sign_in(driver).is_ok());
  CpuCard rider(card_image(1, 1000), sim::Rng(1));
  ASSERT_TRUE(first.tap(rider).ok());
  const auto travel = rider.travel_records();
  ASSERT_EQ(travel.size(), 1u);
  const auto rec = protocol::TravelRecord::decode(travel[0]);
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->amount_fen, 200u);
  EXPECT_EQ(rec->balance_after_fen, 800u);
  EXPECT_EQ(rec->sub_type, 0x01);
  EXPECT_EQ(rec->terminal, travel_terminal(testing::kTerminal));

  // 30 minutes later on another bus: a transfer, 100 fen off.
  second.loop.run_until(30 * kMinute);
  SaleResult r = second.tap(rider);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_TRUE(r.fare.transfer);
  EXPECT_EQ(r.record.amount_fen(), 100);
  EXPECT_EQ(r.record.fare_full_fen(), 200);
  EXPECT_EQ(r.record.transfer_count(), 1u);
  EXPECT_EQ(rider.balance_fen(), 700u);

  // Two hours after that, back on the first bus: outside the window, full fare.
  first.loop.run_until(150 * kMinute);
  r = first.tap(rider);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_FALSE(r.fare.transfer);
  EXPECT_EQ(rider.balance_fen(), 500u);
}

TEST(BusTerminal, CardTypeDiscountsReadFromTheCard) {
  Bus b;
  CpuCard driver(typed(900, 0, CardType::kStaff), sim::Rng(3));
  ASSERT_TRUE(b.sign_in(driver).is_ok());
  CpuCard student(typed(1, 1000, CardType::kStudent), sim::Rng(1));
  CpuCard elder(typed(2, 1000, CardType::kElder), sim::Rng(2));
  SaleResult r = b.tap(student);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(student.balance_fen(), 900u);
  r = b.tap(elder);
  ASSERT_TRUE(r.ok()) << r.detail;  // free, but still a record for the statistics
  EXPECT_EQ(r.record.amount_fen(), 0);
  EXPECT_EQ(elder.balance_fen(), 1000u);
}

TEST(BusTerminal, DoubleTapIsRefusedWithoutADebitUntilTheWindowPasses) {
  Bus b;
  CpuCard driver(typed(900, 0, CardType::kStaff), sim::Rng(3));
  ASSERT_TRUE(b.sign_in(driver).is_ok());
  CpuCard rider(card_image(1, 1000), sim::Rng(1));
  ASSERT_TRUE(b.tap(rider).ok());
  b.loop.run_until(9'999'999);
  EXPECT_EQ(b.tap(rider).local, LocalRefusal::kDoubleTap);
  EXPECT_EQ(rider.balance_fen(), 800u);
  b.loop.run_until(10'000'000);
  EXPECT_TRUE(b.tap(rider).ok());
  EXPECT_EQ(b.bus.counters().refused(LocalRefusal::kDoubleTap), 1u);
}

TEST(BusTerminal, RefusesExpiredBlacklistedAndPoorCards) {
  Bus b;
  CpuCard driver(typed(900, 0, CardType::kStaff), sim::Rng(3));
  ASSERT_TRUE(b.sign_in(driver).is_ok());
  protocol::CardImage old = card_image(1, 1000);
  old.valid_to = protocol::date_bcd(2023, 12, 31);
  CpuCard expired(old, sim::Rng(1));
  EXPECT_EQ(b.tap(expired).refusal, Refusal::kCardExpired);
  CpuCard poor(card_image(2, 150), sim::Rng(2));
  EXPECT_EQ(b.tap(poor).refusal, Refusal::kInsufficientBalance);
  EXPECT_EQ(poor.balance_fen(), 150u);
  // The blacklist fed locally, as the backend's BlacklistReply would feed it.
  BlacklistCache cache;
  citycard::wire::BlacklistReply page;
  page.set_version(1);
  page.add_added(wire::field(testing::serial_of(3)));
  ASSERT_TRUE(cache.apply(page, 0).is_ok());
  b.bus.set_blacklist(cache.predicate());
  CpuCard stolen(card_image(3, 1000), sim::Rng(3));
  EXPECT_EQ(b.tap(stolen).refusal, Refusal::kBlacklisted);
  EXPECT_EQ(stolen.lock(), CpuCard::Lock::kTemporary);
  EXPECT_EQ(b.tap(stolen).refusal, Refusal::kCardBlocked);  // locked: refused at SELECT
}

TEST(BusTerminal, TimeBudgetAbortsASlowTransaction) {
  BusTerminalConfig c = config();
  c.core.budget.budget_us = 20'000;  // far less than a composite purchase takes
  Bus b(c);
  CpuCard driver(typed(900, 0, CardType::kStaff), sim::Rng(3));
  ASSERT_FALSE(b.sign_in(driver).is_ok());  // even the driver's read does not fit 20 ms
  // A count budget alone, on a link that does not model time.
  struct Untimed final : CardLink {
    explicit Untimed(CpuCard& c) : card(c) {}
    Result<protocol::Response> transceive(const protocol::Command& cmd) override {
      return protocol::Response::parse(card.process(cmd.encode()));
    }
    CpuCard& card;
  };
  BusTerminalConfig counted = config();
  counted.core.budget.exchanges_max = 7;  // facts take 5, the engine needs 5 more
  Bus cb(counted);
  Untimed dl(driver);
  driver.reset();
  ASSERT_TRUE(cb.bus.sign_in(dl).is_ok());
  CpuCard rider(card_image(1, 1000), sim::Rng(1));
  rider.reset();
  Untimed rl(rider);
  const SaleResult r = cb.bus.tap(rl);
  EXPECT_EQ(r.local, LocalRefusal::kTimeBudget) << r.detail;
  EXPECT_EQ(rider.balance_fen(), 1000u);
}

TEST(BusTerminal, SignOnCorrectsTheDriftingClock) {
  BusTerminalConfig c = config();
  c.core.clock_drift_ppm = 100;  // 8.64 s a day
  Bus b(c);
  b.loop.run_until(3600 * 1'000'000LL);
  EXPECT_EQ(b.bus.core().clock().error_us(), 360'000);
  EXPECT_EQ(b.bus.sign_on(b.loop.now_us()), -360'000);
  EXPECT_EQ(b.bus.core().clock().error_us(), 0);
}

TEST(BusTerminal, RecordsSurvivePowerLossAndUploadOnce) {
  auto disk = std::make_shared<MemoryDisk>();
  sim::EventLoop loop;
  Psam psam(testing::psam_image());
  ScriptedChannel channel(loop);
  CpuCard driver(typed(900, 0, CardType::kStaff), sim::Rng(3));
  {
    MemoryLogStorage storage(disk);
    BusTerminal bus(config(), psam, loop, channel, storage);
    driver.reset();
    DirectLink dl(driver);
    ASSERT_TRUE(bus.sign_in(dl).is_ok());
    for (std::uint64_t n = 1; n <= 3; ++n) {
      CpuCard rider(card_image(n, 1000), sim::Rng(n));
      DirectLink rl(rider);
      ASSERT_TRUE(bus.tap(rl).ok());
    }
  }
  disk->power_off();
  MemoryLogStorage storage(disk);
  BusTerminal bus(config(), psam, loop, channel, storage);
  EXPECT_EQ(bus.core().queue().size(), 3u);
  bus.upload();
  loop.run();
  EXPECT_EQ(bus.core().queue().size(), 0u);
  ASSERT_EQ(channel.clearing.batches.size(), 1u);
  EXPECT_EQ(channel.clearing.batches[0].record_count(), 3u);
}

}  // namespace
}  // namespace citycard::devices
