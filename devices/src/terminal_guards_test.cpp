#include "citycard/devices/terminal_guards.h"

#include <gtest/gtest.h>

#include "citycard/devices/cpu_card.h"
#include "citycard/sim/event_loop.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

using testing::serial_of;

TEST(DoubleTapGuard, RefusesWithinTheWindowOnlyAndStaysBounded) {
  DoubleTapGuard g(10'000'000, /*cards_max=*/2);
  EXPECT_FALSE(g.refuses(serial_of(1), 0));
  g.sold(serial_of(1), 0);
  EXPECT_TRUE(g.refuses(serial_of(1), 9'999'999));
  EXPECT_FALSE(g.refuses(serial_of(1), 10'000'000));
  EXPECT_FALSE(g.refuses(serial_of(2), 1));
  g.sold(serial_of(1), 20'000'000);
  g.sold(serial_of(2), 20'000'001);
  g.sold(serial_of(3), 20'000'002);  // past the bound: card 1 is forgotten first
  EXPECT_LE(g.size(), 2u);
  EXPECT_FALSE(g.refuses(serial_of(1), 20'000'003));
  EXPECT_TRUE(g.refuses(serial_of(3), 20'000'003));
}

TEST(BudgetLink, StopsAtTheExchangeCountAndAtTheTime) {
  CpuCard card(testing::card_image(1, 100), sim::Rng(1));
  DirectLink link(card);
  const protocol::Command balance{0x80, 0x5C, 0x00, 0x02, {}, std::uint16_t{4}};
  BudgetLink counted(link, TransactionBudget{1'000'000'000, 2});
  EXPECT_TRUE(counted.transceive(balance).is_ok());
  EXPECT_TRUE(counted.transceive(balance).is_ok());
  const auto third = counted.transceive(balance);
  EXPECT_EQ(third.status().code(), Errc::kTimeout);
  EXPECT_TRUE(counted.exceeded());
  // By time: the first exchange (with the card's activation) already exceeds 1 us, so the
  // second is refused; the budget is measured from the wrapper's construction.
  BudgetLink timed(link, TransactionBudget{1, 100});
  EXPECT_TRUE(timed.transceive(balance).is_ok());
  EXPECT_GT(timed.used_us(), 1);
  EXPECT_EQ(timed.transceive(balance).status().code(), Errc::kTimeout);
}

TEST(TerminalClock, DriftsAndSignOnCorrectsIt) {
  sim::EventLoop loop;
  TerminalClock clock(loop, -50);  // loses 50 us a second
  loop.run_until(1'000'000'000);
  EXPECT_EQ(clock.error_us(), -50'000);
  EXPECT_EQ(clock.sign_on(loop.now_us()), 50'000);
  EXPECT_EQ(clock.now_us(), loop.now_us());
  loop.run_until(2'000'000'000);
  EXPECT_EQ(clock.error_us(), -50'000);  // the rate stays; sign-on fixes the reading only
}

}  // namespace
}  // namespace citycard::devices
