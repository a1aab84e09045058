#include "citycard/sim/event_loop.h"

#include <gtest/gtest.h>

#include <string>

namespace citycard::sim {
namespace {

TEST(EventLoop, RunsInTimeOrderAndSameTimeInFifoOrder) {
  EventLoop loop;
  std::string order;
  loop.schedule_at(30, [&] { order += "c"; });
  loop.schedule_at(10, [&] { order += "a"; });
  loop.schedule_at(20, [&] { order += "b1"; });
  loop.schedule_at(20, [&] { order += "b2"; });
  loop.run();
  EXPECT_EQ(order, "ab1b2c");
  EXPECT_EQ(loop.now_us(), 30);
  EXPECT_EQ(loop.events_processed(), loop.events_scheduled());
}

TEST(EventLoop, EventsCanScheduleMoreEvents) {
  EventLoop loop;
  int ticks = 0;
  std::function<void()> tick = [&] {
    if (++ticks < 5) loop.schedule_after(100, tick);
  };
  loop.schedule_at(0, tick);
  loop.run();
  EXPECT_EQ(ticks, 5);
  EXPECT_EQ(loop.now_us(), 400);
}

TEST(EventLoop, RunUntilStopsAtTheHorizonAndAdvancesTheClock) {
  EventLoop loop;
  int ran = 0;
  loop.schedule_at(50, [&] { ++ran; });
  loop.schedule_at(150, [&] { ++ran; });
  loop.run_until(100);
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(loop.now_us(), 100);
  EXPECT_EQ(loop.pending(), 1u);
}

TEST(EventLoop, StopLeavesRemainingEventsQueued) {
  EventLoop loop;
  loop.schedule_at(1, [&] { loop.stop(); });
  loop.schedule_at(2, [] {});
  loop.run();
  EXPECT_EQ(loop.pending(), 1u);
  EXPECT_EQ(loop.now_us(), 1);
}

TEST(EventLoopDeathTest, SchedulingInThePastAborts) {
  EventLoop loop;
  loop.schedule_at(10, [] {});
  loop.run();
  EXPECT_DEATH(loop.schedule_at(5, [] {}), "before now");
}

}  // namespace
}  // namespace citycard::sim

#include "citycard/sim/clock.h"

namespace citycard::sim {
namespace {

TEST(DriftingClock, GainsAtItsRateAndKeepsErrorWhenTheRateChanges) {
  EventLoop loop;
  DriftingClock c(loop, 100);  // 100 ppm fast: 100 us per second
  loop.run_until(10'000'000);
  EXPECT_EQ(c.now_us(), 10'001'000);
  c.set_drift_ppm(-50);
  loop.run_until(20'000'000);
  EXPECT_EQ(c.now_us(), 20'000'500);  // +1000 kept, then -500 over 10 s
  c.correct_to(loop.now_us());
  EXPECT_EQ(c.error_us(), 0);
}

}  // namespace
}  // namespace citycard::sim
