#include "citycard/devices/blacklist_cache.h"

#include <gtest/gtest.h>

#include "test_support.h"

namespace citycard::devices {
namespace {

namespace wire = protocol::wire;
using testing::serial_of;

citycard::wire::BlacklistReply page(std::uint64_t version, std::vector<std::uint64_t> added,
                                    std::vector<std::uint64_t> removed, bool reset = false) {
  citycard::wire::BlacklistReply p;
  p.set_version(version);
  p.set_latest_version(version);
  p.set_reset(reset);
  for (auto n : added) p.add_added(wire::field(serial_of(n)));
  for (auto n : removed) p.add_removed(wire::field(serial_of(n)));
  return p;
}

TEST(BlacklistCache, AppliesDeltasInOrderAndResets) {
  BlacklistCache c;
  ASSERT_TRUE(c.apply(page(1, {1, 2, 3}, {}), 0).is_ok());
  ASSERT_TRUE(c.apply(page(2, {4}, {2}), 1).is_ok());
  EXPECT_TRUE(c.listed(serial_of(1)));
  EXPECT_FALSE(c.listed(serial_of(2)));
  EXPECT_TRUE(c.listed(serial_of(4)));
  EXPECT_EQ(c.version(), 2u);
  // A delta for a version we do not hold is refused and changes nothing.
  EXPECT_EQ(c.apply(page(5, {9}, {}), 4).code(), Errc::kConflict);
  EXPECT_FALSE(c.listed(serial_of(9)));
  ASSERT_TRUE(c.apply(page(7, {9}, {}, /*reset=*/true), 0).is_ok());
  EXPECT_EQ(c.size(), 1u);
  EXPECT_TRUE(c.predicate()(serial_of(9)));
}

TEST(BlacklistCache, RefusesAPagePastItsBoundWhole) {
  BlacklistCache c(2);
  EXPECT_EQ(c.apply(page(1, {1, 2, 3}, {}), 0).code(), Errc::kTooLarge);
  EXPECT_EQ(c.size(), 0u);
  EXPECT_EQ(c.version(), 0u);
  citycard::wire::BlacklistReply bad = page(1, {}, {});
  bad.add_added("short");
  EXPECT_EQ(c.apply(bad, 0).code(), Errc::kMalformed);
}

}  // namespace
}  // namespace citycard::devices
