#include "citycard/hil/m1_memory_card.h"

#include <gtest/gtest.h>

#include "citycard/hil/field_card.h"

namespace citycard::hil {
namespace {

const std::array<std::uint8_t, 4> kUid{0xAA, 0xBB, 0xCC, 0xDD};

Bytes auth(std::uint8_t op, std::uint8_t blk, std::string_view key_hex,
           std::string_view uid_hex = "aabbccdd") {
  Bytes c{op, blk};
  put_bytes(c, from_hex(key_hex));
  put_bytes(c, from_hex(uid_hex));
  return c;
}

TEST(MifareClassic1k, AuthenticatesPerSectorWithKeyAOrB) {
  MifareClassic1k card(kUid);
  card.set_keys(1, array_from_hex<6>("a0a1a2a3a4a5"), array_from_hex<6>("b0b1b2b3b4b5"));
  EXPECT_FALSE(card.process(auth(0x60, 4, "a0a1a2a3a4a5")).empty());
  EXPECT_EQ(card.process(from_hex("3005")).size(), 16u);
  EXPECT_EQ(card.process(from_hex("3008")), Bytes{0x04}) << "sector 2 is not authenticated";
  EXPECT_FALSE(card.process(auth(0x61, 7, "b0b1b2b3b4b5")).empty());
  const Bytes trailer = card.process(from_hex("3007"));
  ASSERT_EQ(trailer.size(), 16u);
  EXPECT_EQ(to_hex(trailer), "000000000000ff078069b0b1b2b3b4b5") << "key A never reads back";
}

TEST(MifareClassic1k, ARefusedAuthHaltsTheCardUntilPowerOff) {
  MifareClassic1k card(kUid);
  EXPECT_TRUE(card.process(auth(0x60, 4, "000000000000")).empty());
  EXPECT_TRUE(card.process(auth(0x60, 4, "ffffffffffff")).empty()) << "halted";
  card.reset();
  EXPECT_FALSE(card.process(auth(0x60, 4, "ffffffffffff")).empty());
  EXPECT_TRUE(card.process(auth(0x60, 8, "ffffffffffff", "00000000")).empty()) << "wrong UID";
}

TEST(MifareClassic1k, WritesAndValueOperationsKeepTheBackupLayout) {
  MifareClassic1k card(kUid);
  ASSERT_FALSE(card.process(auth(0x60, 4, "ffffffffffff")).empty());
  Bytes write{0xA0, 0x04};
  const auto value = MifareClassic1k::value_block(1000, 4);
  write.insert(write.end(), value.begin(), value.end());
  EXPECT_EQ(card.process(write), Bytes{kMifareAck});
  EXPECT_EQ(card.process(from_hex("c004 c8000000")), Bytes{kMifareAck});  // -200
  EXPECT_EQ(card.process(from_hex("b004")), Bytes{kMifareAck});
  EXPECT_EQ(MifareClassic1k::value_of(card.block(4)), 800);
  // RESTORE + TRANSFER copies the value with its address byte: an exact backup.
  EXPECT_EQ(card.process(from_hex("c204 00000000")), Bytes{kMifareAck});
  EXPECT_EQ(card.process(from_hex("b005")), Bytes{kMifareAck});
  EXPECT_EQ(card.block(5), card.block(4));
  EXPECT_EQ(card.process(from_hex("b006")), Bytes{0x04}) << "the transfer buffer is spent";
  EXPECT_EQ(card.process(from_hex("c106 01000000")), Bytes{0x04}) << "block 6 is no value block";
  Bytes write0{0xA0, 0x00};
  write0.resize(18);
  EXPECT_EQ(card.process(write0), Bytes{0x04}) << "block 0 is read-only";
}

TEST(MifareClassic1k, ValueBlocksAreChecked) {
  auto b = MifareClassic1k::value_block(-5, 9);
  EXPECT_EQ(MifareClassic1k::value_of(b), -5);
  b[5] ^= 1;
  EXPECT_FALSE(MifareClassic1k::value_of(b).has_value());
}

}  // namespace
}  // namespace citycard::hil
