#include "citycard/devices/taxi_meter.h"

#include <gtest/gtest.h>

#include "citycard/devices/cpu_card.h"
#include "citycard/sim/event_loop.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

constexpr std::int64_t kDay = 86'400;
std::int64_t at(int hh, int mm) {
  return 200 * kDay + hh * 3600 + mm * 60;
}

TEST(TaxiMeter, FlagFallCoversTheFirstKilometresAndStepsJumpWhenTheyBegin) {
  TaxiMeter m;
  m.start(at(10, 0));
  EXPECT_EQ(m.fare_fen(), 1400u);
  m.drive(3000, 300);
  EXPECT_EQ(m.fare_fen(), 1400u);
  m.drive(1, 1);  // 1 m/s is below 3.3 m/s: waiting time, not distance
  EXPECT_EQ(m.distance_m(), 3000u);
  EXPECT_EQ(m.waiting_s(), 1u);
  m.drive(10, 1);
  EXPECT_EQ(m.fare_fen(), 1650u);
}

// One trip, by hand: 16.2 km driven and 300 s waiting.
//   flag fall 1400; 3..15 km: 12 steps x 250 = 3000; 15..16.2 km: 2 started steps x 360 = 720;
//   waiting: 1 completed 240 s step = 250. Total 5370.
TaxiMeter trip(std::int64_t start, TaxiTariff tariff = {}) {
  TaxiMeter m(tariff);
  m.start(start);
  m.drive(2000, 200);
  m.drive(1500, 150);
  m.drive(100, 300);  // a jam: 0.33 m/s counts as waiting
  m.drive(12700, 1270);
  return m;
}

TEST(TaxiMeter, DistanceLongDistanceAndWaiting) {
  const TaxiMeter m = trip(at(10, 0));
  EXPECT_EQ(m.distance_m(), 16'200u);
  EXPECT_EQ(m.waiting_s(), 300u);
  EXPECT_FALSE(m.night());
  EXPECT_EQ(m.fare_fen(), 5370u);
}

TEST(TaxiMeter, NightSurchargeByStartTimeRoundedDownAndOptionalYuanRounding) {
  EXPECT_TRUE(trip(at(23, 30)).night());
  EXPECT_EQ(trip(at(23, 30)).fare_fen(), 5370u + 1611u);  // 30 % of 5370 = 1611
  EXPECT_TRUE(trip(at(4, 59)).night());
  EXPECT_FALSE(trip(at(5, 0)).night());
  TaxiTariff yuan;
  yuan.round_to_yuan = true;
  EXPECT_EQ(trip(at(10, 0), yuan).fare_fen(), 5400u);   // 53.70 -> 54
  EXPECT_EQ(trip(at(23, 30), yuan).fare_fen(), 7000u);  // 69.81 -> 70
}

struct Taxi {
  Taxi()
      : psam(testing::psam_image()),
        channel(loop),
        storage(disk),
        module(config(), psam, loop, channel, storage) {}
  static TaxiModuleConfig config() {
    TaxiModuleConfig c;
    c.core.device_id = "TX-1";
    c.core.operator_id = "SH-TAXI";
    c.core.calendar_origin_epoch2000_s =  // inside the cards' validity
        protocol::epoch2000_from_datetime(array_from_hex<7>("20240315100000"));
    c.plate = "沪B-00001";
    c.driver = "D-4711";
    return c;
  }
  SaleResult charge(CpuCard& card, const TaxiMeter& m) {
    card.reset();
    DirectLink link(card);
    return module.charge(link, m);
  }
  sim::EventLoop loop;
  Psam psam;
  testing::ScriptedChannel channel;
  std::shared_ptr<MemoryDisk> disk = std::make_shared<MemoryDisk>();
  MemoryLogStorage storage;
  TaxiModule module;
};

TEST(TaxiModule, ChargesTheMeterFareAtTheEndOfTheTrip) {
  Taxi t;
  CpuCard card(testing::card_image(1, 10'000), sim::Rng(1));
  const SaleResult r = t.charge(card, trip(at(10, 0)));
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(card.balance_fen(), 10'000u - 5370u);
  EXPECT_EQ(r.record.vehicle(), "沪B-00001");
  EXPECT_EQ(r.record.driver(), "D-4711");
  EXPECT_EQ(r.record.route(), "taxi");
  t.module.upload();
  t.loop.run();
  EXPECT_EQ(t.channel.clearing.batches.size(), 1u);
}

TEST(TaxiModule, InsufficientBalanceLeavesTheCardAndTheQueueAlone) {
  Taxi t;
  CpuCard card(testing::card_image(1, 5000), sim::Rng(1));
  EXPECT_EQ(t.charge(card, trip(at(10, 0))).refusal, Refusal::kInsufficientBalance);
  EXPECT_EQ(card.balance_fen(), 5000u);
  EXPECT_EQ(t.module.core().queue().size(), 0u);
}

}  // namespace
}  // namespace citycard::devices
