#include "citycard/protocol/purse.h"

#include <gtest/gtest.h>

namespace citycard::protocol {
namespace {

TEST(Purse, LogRecordRoundTrip) {
  LogRecord r{7, 0, 200, txn::kPurchase, array_from_hex<6>("001122334455"),
              array_from_hex<7>("20120229135100")};
  Bytes b = r.encode();
  ASSERT_EQ(b.size(), LogRecord::kSize);
  EXPECT_EQ(to_hex(b), "0007000000000000c806001122334455" "20120229135100");
  auto back = LogRecord::decode(b);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, r);
  b.pop_back();
  EXPECT_FALSE(LogRecord::decode(b).has_value());
}

TEST(Purse, DateTimeBcdRoundTrip) {
  const DateTime7 leap = array_from_hex<7>("20120229135100");
  const std::int64_t s = epoch2000_from_datetime(leap);
  EXPECT_EQ(datetime_from_epoch2000(s), leap);
  EXPECT_EQ(datetime_to_string(leap), "2012-02-29 13:51:00");
  EXPECT_EQ(datetime_from_epoch2000(0), array_from_hex<7>("20000101000000"));
  EXPECT_EQ(datetime_from_epoch2000(86400 * 366), array_from_hex<7>("20010101000000"));
}

}  // namespace
}  // namespace citycard::protocol
