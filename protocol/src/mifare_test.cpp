#include "citycard/protocol/mifare.h"

#include <gtest/gtest.h>

namespace citycard::protocol::m1 {
namespace {

TEST(M1ValueBlock, LayoutIsValueNotValueValueAddrNotAddrAddrNotAddr) {
  const Block b = value_block(1000, 8);
  EXPECT_EQ(to_hex(b),
            "e8030000"
            "17fcffff"
            "e8030000"
            "08f708f7");
  const auto v = decode_value(b);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->value, 1000);
  EXPECT_EQ(v->addr, 8);
  EXPECT_EQ(decode_value(value_block(-5, 9))->value, -5);
}

TEST(M1ValueBlock, AnyBrokenRedundancyIsRejected) {
  const Block good = value_block(123456, 8);
  for (std::size_t i = 0; i < 16; ++i) {
    Block bad = good;
    bad[i] ^= 0x01;
    EXPECT_FALSE(decode_value(bad)) << "byte " << i;
  }
  Block zeros{};
  EXPECT_FALSE(decode_value(zeros));
}

TEST(M1Access, TransportConfigurationIsFF0780) {
  EXPECT_EQ(to_hex(encode_access(kTransportAccess)), "ff0780");
  const std::uint8_t bits[3] = {0xFF, 0x07, 0x80};
  EXPECT_EQ(decode_access(bits), kTransportAccess);
}

TEST(M1Access, EveryCodeCombinationRoundTripsAndBrokenComplementsAreRejected) {
  for (int n = 0; n < 4096; ++n) {
    Access a{{static_cast<std::uint8_t>(n & 7), static_cast<std::uint8_t>((n >> 3) & 7),
              static_cast<std::uint8_t>((n >> 6) & 7), static_cast<std::uint8_t>((n >> 9) & 7)}};
    const auto bits = encode_access(a);
    ASSERT_EQ(decode_access(bits.data()), a) << n;
    auto broken = bits;
    broken[0] ^= 0x10;
    ASSERT_FALSE(decode_access(broken.data())) << n;
  }
}

TEST(M1Access, DataSheetTablesForThePurseSectors) {
  const std::uint8_t trailer = kPurseSectorAccess.code[3];  // 011: key B not readable
  EXPECT_FALSE(key_b_readable(trailer));
  // Value block 110: decrement with A or B, increment with B only, write with B only.
  EXPECT_TRUE(data_allowed(6, trailer, DataOp::kDecrement, KeyType::kA));
  EXPECT_TRUE(data_allowed(6, trailer, DataOp::kDecrement, KeyType::kB));
  EXPECT_FALSE(data_allowed(6, trailer, DataOp::kIncrement, KeyType::kA));
  EXPECT_TRUE(data_allowed(6, trailer, DataOp::kIncrement, KeyType::kB));
  EXPECT_FALSE(data_allowed(6, trailer, DataOp::kWrite, KeyType::kA));
  EXPECT_TRUE(data_allowed(6, trailer, DataOp::kRead, KeyType::kA));
  // 111: nothing at all.
  for (DataOp op : {DataOp::kRead, DataOp::kWrite, DataOp::kIncrement, DataOp::kDecrement}) {
    EXPECT_FALSE(data_allowed(7, trailer, op, KeyType::kA));
    EXPECT_FALSE(data_allowed(7, trailer, op, KeyType::kB));
  }
  // Trailer 011: keys written with B only; access bits read with A or B.
  EXPECT_FALSE(trailer_write_allowed(trailer, TrailerField::kKeyA, KeyType::kA));
  EXPECT_TRUE(trailer_write_allowed(trailer, TrailerField::kKeyA, KeyType::kB));
  EXPECT_TRUE(trailer_read_allowed(trailer, TrailerField::kAccess, KeyType::kA));
  EXPECT_FALSE(trailer_read_allowed(trailer, TrailerField::kKeyA, KeyType::kB));
  // Transport trailer 001: key B is readable, so it opens nothing.
  EXPECT_TRUE(key_b_readable(1));
  EXPECT_FALSE(data_allowed(0, 1, DataOp::kRead, KeyType::kB));
  EXPECT_TRUE(data_allowed(0, 1, DataOp::kWrite, KeyType::kA));
}

TEST(M1ProcessInfo, XorCheckAndStateByteGuardAgainstTornAndErasedBlocks) {
  ProcessInfo p;
  p.state = ProcessInfo::kInProgress;
  p.counter = 0x1234;
  p.slot = 3;
  p.balance_before_fen = 1000;
  p.amount_fen = 200;
  p.type = txn::kPurchase;
  p.terminal_seq_low = 0xBEEF;
  const Block b = p.encode();
  std::uint8_t x = 0;
  for (int i = 0; i < 15; ++i) x ^= b[i];
  EXPECT_EQ(b[15], x) << "byte 15 is the XOR of bytes 0..14";
  EXPECT_EQ(ProcessInfo::decode(b), p);
  for (std::size_t i = 0; i < 16; ++i) {
    Block bad = b;
    bad[i] ^= 0x40;
    EXPECT_FALSE(ProcessInfo::decode(bad)) << "byte " << i;
  }
  Block erased{};
  EXPECT_FALSE(ProcessInfo::decode(erased)) << "all zeros passes the XOR, not the state check";
  erased.fill(0xFF);
  EXPECT_FALSE(ProcessInfo::decode(erased));
}

TEST(M1Record, RoundTripsAndChecksItsXor) {
  Record r{7, txn::kPurchase, 200, 800, 1'000'000, 0x0405};
  const Block b = r.encode();
  EXPECT_EQ(Record::decode(b), r);
  Block bad = b;
  bad[4] ^= 1;
  EXPECT_FALSE(Record::decode(bad));
}

TEST(M1Personalisation, PurseSectorsGetDerivedKeysAndTheirAccess) {
  const auto master = array_from_hex<16>("0f0e0d0c0b0a09080706050403020100");
  const Uid4 uid{0x08, 0x12, 0x34, 0x56};
  IssuerInfo info;
  info.card_number_bcd = card_number_bcd("310012345");
  EXPECT_EQ(to_hex(info.card_number_bcd), "310012345fffffff");
  const M1Image image = m1_image(uid, 5000, info, master);
  const auto blocks = personalised_blocks(image);
  EXPECT_EQ(to_hex(ByteView(blocks[0].data(), 5)), "0812345678") << "UID and BCC";
  EXPECT_EQ(decode_value(blocks[8])->value, 5000);
  EXPECT_EQ(decode_value(blocks[9])->value, 5000);
  const auto pi = ProcessInfo::decode(blocks[24]);
  ASSERT_TRUE(pi);
  EXPECT_EQ(pi->state, ProcessInfo::kDone);
  EXPECT_EQ(blocks[24], blocks[25]);
  EXPECT_EQ(take<6>(blocks[11], 0), sector_key(master, uid, 2, KeyType::kA));
  EXPECT_EQ(take<6>(blocks[11], 10), sector_key(master, uid, 2, KeyType::kB));
  EXPECT_NE(sector_key(master, uid, 2, KeyType::kA), sector_key(master, uid, 3, KeyType::kA));
  EXPECT_EQ(decode_access(blocks[11].data() + 6), kPurseSectorAccess);
  EXPECT_EQ(take<6>(blocks[63], 0), kTransportKey);
  EXPECT_EQ(decode_access(blocks[63].data() + 6), kTransportAccess);
}

}  // namespace
}  // namespace citycard::protocol::m1
