#include "citycard/hil/pn532_frame.h"

#include <gtest/gtest.h>

namespace citycard::hil::pn532 {
namespace {

std::vector<Frame> decode(FrameDecoder& d, std::string_view hex, std::int64_t now_us = 0) {
  std::vector<Frame> out;
  d.feed(from_hex(hex), now_us, out);
  return out;
}

TEST(Pn532Frame, EncodesWhatLibnfcSendsAndExpects) {
  // GetFirmwareVersion as libnfc sends it, and the PN532 v1.6 reply (PN532.md).
  EXPECT_EQ(to_hex(encode_frame(kTfiHostToChip, from_hex("02"))), "0000ff02fed4022a00");
  EXPECT_EQ(to_hex(encode_frame(kTfiChipToHost, from_hex("0332010607"))),
            "0000ff06fad50332010607e800");
  EXPECT_EQ(to_hex(ack_frame()), "0000ff00ff00");
  EXPECT_EQ(to_hex(error_frame()), "0000ff01ff7f8100");
}

TEST(Pn532Frame, LongPayloadsUseExtendedFrames) {
  Bytes data(260, 0xAB);
  data[0] = 0x41;
  const Bytes f = encode_frame(kTfiChipToHost, data);
  ASSERT_EQ(f.size(), data.size() + 11);
  EXPECT_EQ(to_hex(ByteView(f).first(8)), "0000ffffff0105fa");  // LEN 0x0105 = 261, LCS
  FrameDecoder d;
  std::vector<Frame> out;
  d.feed(f, 0, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].tfi, kTfiChipToHost);
  EXPECT_EQ(out[0].data, data);
  // The largest normal frame stays normal.
  EXPECT_EQ(encode_frame(kTfiHostToChip, Bytes(kNormalFrameDataMax, 1))[3], 0xFF);
  EXPECT_NE(encode_frame(kTfiHostToChip, Bytes(kNormalFrameDataMax, 1))[4], 0xFF);
}

TEST(Pn532Frame, SkipsTheWakeUpPreambleAndFindsTheFrameBehindIt) {
  FrameDecoder d;
  // libnfc's wake-up (55 55 + 14 x 00) then SAMConfiguration 14 01, in one write.
  const auto out = decode(d, "5555" + std::string(28, '0') + "0000ff03fdd414011700");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, Frame::Kind::kData);
  EXPECT_EQ(to_hex(out[0].data), "1401");
  EXPECT_EQ(d.counters().frames, 1u);
}

TEST(Pn532Frame, AckAndNackAreRecognised) {
  FrameDecoder d;
  const auto out = decode(d, "0000ff00ff00 0000ffff0000");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].kind, Frame::Kind::kAck);
  EXPECT_EQ(out[1].kind, Frame::Kind::kNack);
}

TEST(Pn532Frame, FramesSplitAcrossReadsAreReassembled) {
  FrameDecoder d;
  EXPECT_TRUE(decode(d, "0000ff03", 0).empty());
  EXPECT_TRUE(decode(d, "fdd414", 1000).empty());
  const auto out = decode(d, "011700", 2000);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(to_hex(out[0].data), "1401");
}

TEST(Pn532Frame, BadChecksumsAreDroppedAndTheNextFrameIsStillFound) {
  FrameDecoder d;
  // Bad LCS, then bad DCS, then a good frame: only the good one comes out.
  const auto out = decode(d, "0000ff03fcd4140117 00 0000ff03fdd414011800 0000ff02fed4022a00");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(to_hex(out[0].data), "02");
  EXPECT_EQ(d.counters().bad_length_checksum, 1u);
  EXPECT_EQ(d.counters().bad_data_checksum, 1u);
}

TEST(Pn532Frame, AFrameInsideGarbageThatLooksLikeAStartIsFound) {
  FrameDecoder d;
  // "00 ff 05 fb" announces 5 bytes; its DCS fails, and the decoder must not swallow the real
  // frame that begins inside what it thought was the payload.
  const auto out = decode(d, "00ff05fbd4 0000ff02fed4022a00 00");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(to_hex(out[0].data), "02");
}

TEST(Pn532Frame, OversizedLengthsAreRejected) {
  FrameDecoder d;
  // Extended LEN 0x0200 is over what a PN532 takes; LCS is right, so only the size catches it.
  const auto out = decode(d, "0000ffffff0200fe 0000ff02fed4022a00");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(d.counters().oversized, 1u);
}

TEST(Pn532Frame, APartialFrameIsDroppedAfterSilence) {
  FrameDecoder d;
  EXPECT_TRUE(decode(d, "0000ff03fdd414", 0).empty());
  ASSERT_TRUE(d.partial_deadline_us().has_value());
  EXPECT_EQ(*d.partial_deadline_us(), kPartialFrameTimeoutUs);
  EXPECT_FALSE(d.expire(kPartialFrameTimeoutUs - 1));
  EXPECT_TRUE(d.expire(kPartialFrameTimeoutUs));
  EXPECT_EQ(d.counters().partial_dropped, 1u);
  // The next client's frame is decoded on its own, not glued to the fragment.
  const auto out = decode(d, "0000ff02fed4022a00", 200'000);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(to_hex(out[0].data), "02");
}

TEST(Pn532Frame, SilenceIsNoticedByFeedItselfToo) {
  FrameDecoder d;
  EXPECT_TRUE(decode(d, "0000ff03fdd414", 0).empty());
  // Without an expire() call in between, the fragment must still not swallow the new frame.
  const auto out = decode(d, "0000ff02fed4022a00", 500'000);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(to_hex(out[0].data), "02");
  EXPECT_EQ(d.counters().partial_dropped, 1u);
}

TEST(Pn532Frame, NoiseIsBoundedAndCounted) {
  FrameDecoder d;
  std::vector<Frame> out;
  const Bytes noise(10'000, 0x55);
  d.feed(noise, 0, out);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(d.counters().skipped_bytes, noise.size());
  EXPECT_FALSE(d.partial_deadline_us().has_value());
}

}  // namespace
}  // namespace citycard::hil::pn532
