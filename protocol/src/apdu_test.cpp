#include "citycard/protocol/apdu.h"

#include <gtest/gtest.h>

namespace citycard::protocol {
namespace {

TEST(Apdu, RoundTripsAllFourCases) {
  for (const char* hex : {"805C0002", "805C000204", "80DC00F003010203", "805001020B0100000064"
                                                                        "0011223344550F"}) {
    Bytes raw = from_hex(hex);
    auto c = Command::parse(raw);
    ASSERT_TRUE(c.is_ok()) << hex << ": " << c.status().to_string();
    EXPECT_EQ(c->encode(), raw) << hex;
  }
}

TEST(Apdu, Le00MeansTwoHundredFiftySix) {
  auto c = Command::parse(from_hex("00B0000000"));
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(*c->le, 256);
}

TEST(Apdu, RejectsMalformedCommands) {
  EXPECT_EQ(Command::parse(from_hex("8050")).status().code(), Errc::kMalformed);
  // Lc says 11 bytes, 3 follow.
  auto short_body = Command::parse(from_hex("805001020B010203"));
  EXPECT_EQ(short_body.status().code(), Errc::kMalformed);
  EXPECT_NE(short_body.status().message().find("Lc=11"), std::string::npos);
  // Lc = 0 with more bytes is an extended APDU, which the purse does not speak.
  EXPECT_EQ(Command::parse(from_hex("80500102000001")).status().code(), Errc::kMalformed);
}

TEST(Apdu, ResponseCarriesStatusWord) {
  auto r = Response::parse(from_hex("000003E89000"));
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(r->ok());
  EXPECT_EQ(r->data, from_hex("000003E8"));
  auto bad = Response::parse(from_hex("94"));
  EXPECT_FALSE(bad.is_ok());
  EXPECT_STREQ(sw_name(sw::kInsufficientBalance), "insufficient balance");
  EXPECT_EQ(Response::status(sw::kMacInvalid).encode(), from_hex("9302"));
}

}  // namespace
}  // namespace citycard::protocol
