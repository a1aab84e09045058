#include "citycard/devices/card_link.h"

#include <gtest/gtest.h>

#include <vector>

namespace citycard::devices {
namespace {

using protocol::Command;
using protocol::Response;

// A card that records the raw bytes it was given and answers with scripted bytes.
struct BytesCard {
  Bytes process(ByteView capdu) {
    seen.emplace_back(capdu.begin(), capdu.end());
    return answer;
  }
  std::vector<Bytes> seen;
  Bytes answer = from_hex("12349000");
};

TEST(DirectLink, GoesThroughTheByteEncodingsBothWays) {
  BytesCard card;
  DirectLink link(card);
  const Command c{0x80, 0x5C, 0x00, 0x02, {}, 4};
  Result<Response> r = link.transceive(c);
  ASSERT_TRUE(r.is_ok());
  ASSERT_EQ(card.seen.size(), 1u);
  EXPECT_EQ(to_hex(card.seen[0]), "805c000204");
  EXPECT_EQ(r->data, from_hex("1234"));
  EXPECT_EQ(r->sw, 0x9000);
  EXPECT_EQ(link.exchanges(), 1u);
}

TEST(DirectLink, AnAnswerThatIsNoRapduIsMalformedAndNotCounted) {
  BytesCard card;
  card.answer = from_hex("90");
  DirectLink link(card);
  Result<Response> r = link.transceive(Command{0x00, 0xB0, 0x95, 0x00, {}, 0x1E});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::kMalformed);
  EXPECT_EQ(link.exchanges(), 0u);
}

TEST(DirectLink, TraceHookSeesEveryExchangeInOrder) {
  BytesCard card;
  std::vector<std::string> trace;
  DirectLink link(card, [&](const Command& c, const Response& r) {
    trace.push_back(c.to_string() + " -> " + to_hex(r.encode()));
  });
  ASSERT_TRUE(
      link.transceive(Command{0x00, 0xA4, 0x04, 0x00, from_hex("A000000632010105"), 256}).is_ok());
  card.answer = from_hex("6A82");
  ASSERT_TRUE(link.transceive(Command{0x80, 0x5C, 0x00, 0x02, {}, 4}).is_ok());
  ASSERT_EQ(trace.size(), 2u);
  EXPECT_EQ(trace[0], "00A4040008a00000063201010500 -> 12349000");
  EXPECT_EQ(trace[1], "805C000204 -> 6a82");
}

TEST(TearingLink, TearBeforeTheCommandKeepsItFromTheCard) {
  BytesCard card;
  DirectLink direct(card);
  TearingLink link(direct);
  link.tear_at(1, TearingLink::When::kBeforeCommand);
  const Command c{0x80, 0x5C, 0x00, 0x02, {}, 4};
  EXPECT_TRUE(link.transceive(c).is_ok());
  Result<Response> torn = link.transceive(c);
  ASSERT_FALSE(torn.is_ok());
  EXPECT_EQ(torn.status().code(), Errc::kTorn);
  EXPECT_EQ(card.seen.size(), 1u);
  EXPECT_TRUE(link.torn());
  EXPECT_EQ(link.transceive(c).status().code(), Errc::kTorn) << "the card stays out of the field";
  EXPECT_EQ(card.seen.size(), 1u);
}

TEST(TearingLink, TearAfterTheCommandLetsTheCardActButLosesTheAnswer) {
  BytesCard card;
  DirectLink direct(card);
  TearingLink link(direct);
  link.tear_at(0, TearingLink::When::kAfterCommand);
  Result<Response> torn = link.transceive(Command{0x80, 0x54, 0x01, 0x00, from_hex("01"), 8});
  ASSERT_FALSE(torn.is_ok());
  EXPECT_EQ(torn.status().code(), Errc::kTorn);
  EXPECT_EQ(card.seen.size(), 1u);
  EXPECT_EQ(direct.exchanges(), 1u);
}

}  // namespace
}  // namespace citycard::devices
