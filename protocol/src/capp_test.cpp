#include "citycard/protocol/capp.h"

#include <gtest/gtest.h>

namespace citycard::protocol {
namespace {

TEST(TravelRecord, FieldsSitWhereStandardsMdSaysAndRoundTrip) {
  TravelRecord r;
  r.type = txn::kCappPurchase;
  r.terminal = array_from_hex<8>("0000000102030405");
  r.sub_type = 0x01;
  r.station = array_from_hex<7>("00000000710012");
  r.amount_fen = 200;
  r.balance_after_fen = 800;
  r.datetime = array_from_hex<7>("20240315081530");
  r.city = array_from_hex<2>("2000");
  r.institution = array_from_hex<8>("0102030405060708");
  const Bytes b = r.encode();
  ASSERT_EQ(b.size(), 48u);
  EXPECT_EQ(b[0], 0x09);
  EXPECT_EQ(get_u32be(b, 17), 200u) << "amount after type, terminal, sub-type, station";
  EXPECT_EQ(get_u32be(b, 21), 800u);
  EXPECT_EQ(take<7>(b, 25), r.datetime);
  EXPECT_EQ(to_hex(ByteView(b.data() + 42, 6)), "000000000000") << "padding";
  EXPECT_EQ(TravelRecord::decode(b), r);
  EXPECT_FALSE(TravelRecord::decode(ByteView(b.data(), 47)));
}

TEST(MetroRecord, RoundTripsIn128Bytes) {
  MetroRecord m;
  m.state = MetroRecord::kEntered;
  m.line = 2;
  m.entry_station = 0x0215;
  m.entry_device = array_from_hex<4>("0a0b0c0d");
  m.entry_datetime = array_from_hex<7>("20240315081530");
  const Bytes b = m.encode();
  ASSERT_EQ(b.size(), 128u);
  EXPECT_EQ(MetroRecord::decode(b), m);
  EXPECT_FALSE(MetroRecord::decode(ByteView(b.data(), 48)));
}

}  // namespace
}  // namespace citycard::protocol
