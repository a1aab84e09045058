#include "citycard/protocol/wire.h"

#include <gtest/gtest.h>

namespace citycard::protocol::wire {
namespace {

Envelope sample_upload(int records) {
  Envelope e;
  e.set_request_id(42);
  auto* up = e.mutable_upload();
  up->set_terminal_id(std::string("\x00\x11\x22\x33\x44\x55", 6));
  up->set_batch_no(3);
  for (int i = 0; i < records; ++i) {
    auto* r = up->add_records();
    r->set_amount_fen(200);
    r->set_tac(std::string("\x01\x02\x03\x04", 4));
  }
  up->set_record_count(static_cast<std::uint32_t>(records));
  up->set_total_amount_fen(200 * records);
  return e;
}

TEST(WireCodec, RoundTrip) {
  Bytes frame = encode(sample_upload(3));
  auto back = decode(frame);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->request_id(), 42u);
  EXPECT_EQ(back->upload().records_size(), 3);
}

TEST(WireCodec, RejectsTruncatedFrame) {
  Bytes frame = encode(sample_upload(3));
  frame.resize(frame.size() - 5);
  auto r = decode(frame);
  EXPECT_EQ(r.status().code(), Errc::kMalformed);
  EXPECT_NE(r.status().message().find("truncated frame"), std::string::npos);
  EXPECT_EQ(decode(ByteView(frame.data(), 5)).status().code(), Errc::kMalformed);
}

TEST(WireCodec, RejectsTrailingBytesBadMagicAndVersion) {
  Bytes frame = encode(sample_upload(1));
  Bytes longer = frame;
  longer.push_back(0);
  EXPECT_NE(decode(longer).status().message().find("oversized"), std::string::npos);
  Bytes magic = frame;
  magic[0] = 'X';
  EXPECT_EQ(decode(magic).status().message(), "bad frame magic");
  Bytes version = frame;
  version[2] = 9;
  EXPECT_NE(decode(version).status().message().find("unsupported wire version 9"),
            std::string::npos);
}

TEST(WireCodec, RejectsOversizedFrameBeforeParsing) {
  Bytes frame = encode(sample_upload(50));
  auto r = decode(frame, 64);
  EXPECT_EQ(r.status().code(), Errc::kTooLarge);
  // A header that claims 4 GiB is refused without reading further.
  Bytes liar = {'C', 'C', 1, 0, 0xff, 0xff, 0xff, 0xff};
  EXPECT_EQ(decode(liar).status().code(), Errc::kTooLarge);
}

TEST(WireCodec, RejectsGarbagePayloadAndEmptyEnvelope) {
  Bytes garbage = {'C', 'C', 1, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff};
  EXPECT_EQ(decode(garbage).status().code(), Errc::kMalformed);
  Envelope empty;
  empty.set_request_id(1);
  auto r = decode(encode(empty));
  EXPECT_NE(r.status().message().find("no message body"), std::string::npos);
}

TEST(WireCodec, BatchMacInputCoversEveryTacInOrder) {
  Envelope a = sample_upload(2);
  Envelope b = a;
  b.mutable_upload()->mutable_records(1)->set_tac(std::string("\x09\x09\x09\x09", 4));
  EXPECT_NE(batch_mac_input(a.upload()), batch_mac_input(b.upload()));
  EXPECT_EQ(batch_mac_input(a.upload()).size(), 6u + 8 + 4 + 8 + 2 * 4);
}

TEST(WireFields, FixedLengthChecks) {
  Serial8 s;
  EXPECT_TRUE(to_serial(std::string(8, 'x'), s));
  EXPECT_FALSE(to_serial(std::string(7, 'x'), s));
  TerminalId t;
  EXPECT_FALSE(to_terminal(std::string(8, 'x'), t));
}

}  // namespace
}  // namespace citycard::protocol::wire
