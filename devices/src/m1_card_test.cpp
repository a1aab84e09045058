#include "citycard/devices/m1_card.h"

#include <gtest/gtest.h>

#include "citycard/devices/m1_link.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

namespace m1 = protocol::m1;
using m1::KeyType;

constexpr std::uint32_t kUid = 0x0A0B0C0D;

m1::Key6 key(std::uint8_t sector, KeyType t) {
  return m1::sector_key(testing::issuer_keys().m1, testing::m1_image(kUid, 0).uid, sector, t);
}

struct Card {
  explicit Card(std::uint32_t balance = 1000) : card(testing::m1_image(kUid, balance)) {}
  Bytes send(Bytes c) { return card.process(c); }
  // The card's answers: ACK (0A) or NAK (04); a refused AUTH answers nothing (kSilent).
  std::uint8_t first(const Bytes& answer) { return answer.empty() ? kSilent : answer[0]; }
  std::uint8_t auth(std::uint8_t block, KeyType t, const m1::Key6& k) {
    Bytes c{t == KeyType::kA ? m1::cmd::kAuthA : m1::cmd::kAuthB, block};
    put_bytes(c, k);
    put_bytes(c, card.uid());
    return first(send(c));
  }
  std::uint8_t auth(std::uint8_t block, KeyType t) { return auth(block, t, key(block / 4, t)); }
  Bytes read(std::uint8_t block) { return send({m1::cmd::kRead, block}); }
  std::uint8_t write(std::uint8_t block, const m1::Block& b) {
    Bytes c{m1::cmd::kWrite, block};
    put_bytes(c, b);
    return first(send(c));
  }
  std::uint8_t value(std::uint8_t command, std::uint8_t block, std::uint32_t v) {
    return first(
        send({command, block, static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8),
              static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 24)}));
  }
  std::uint8_t transfer(std::uint8_t block) { return first(send({m1::cmd::kTransfer, block})); }
  static constexpr std::uint8_t kSilent = 0xEE;
  std::int32_t purse(std::uint8_t block = 8) { return m1::decode_value(card.block(block))->value; }
  M1Card card;
};

constexpr std::uint8_t kOk = m1::kAck;
constexpr std::uint8_t kNak = m1::kNak;
constexpr std::uint8_t kSilent = Card::kSilent;

TEST(M1Card, AuthenticatesWithTheSectorKeyAndTheUidOnly) {
  Card c;
  EXPECT_EQ(c.read(8), Bytes{kNak}) << "not authenticated";
  EXPECT_EQ(c.auth(8, KeyType::kA, m1::kTransportKey), kSilent);
  EXPECT_TRUE(c.card.halted());
  EXPECT_EQ(c.auth(8, KeyType::kA), kSilent) << "a halted card answers nothing";
  c.card.reset();
  EXPECT_EQ(c.auth(8, KeyType::kA), kOk);
  const Bytes r = c.read(8);
  ASSERT_EQ(r.size(), 16u);
  EXPECT_EQ(m1::decode_value(take<16>(r, 0))->value, 1000);
  EXPECT_EQ(c.read(12), Bytes{kNak}) << "another sector";
  EXPECT_EQ(c.read(8), Bytes{kNak}) << "a NAK dropped the authentication";
  EXPECT_EQ(c.send({m1::cmd::kRead}), Bytes{kNak}) << "no block number";
  EXPECT_EQ(c.send({0x50, 8}), Bytes{kNak}) << "HALT is not a data command here";
  Bytes wrong_uid{m1::cmd::kAuthA, 8};
  put_bytes(wrong_uid, key(2, KeyType::kA));
  put_bytes(wrong_uid, Bytes{1, 2, 3, 4});
  EXPECT_TRUE(c.send(wrong_uid).empty());
}

TEST(M1Card, ValueBlocksFollowTheirAccessConditions) {
  Card c;
  ASSERT_EQ(c.auth(8, KeyType::kA), kOk);
  EXPECT_EQ(c.value(m1::cmd::kDecrement, 8, 150), kOk);
  EXPECT_EQ(c.transfer(8), kOk);
  EXPECT_EQ(c.purse(), 850);
  EXPECT_EQ(c.value(m1::cmd::kIncrement, 8, 10), kNak) << "increment is key B's (110)";
  ASSERT_EQ(c.auth(8, KeyType::kA), kOk);
  EXPECT_EQ(c.write(8, m1::value_block(5000, 8)), kNak) << "write is key B's";
  ASSERT_EQ(c.auth(8, KeyType::kA), kOk);
  EXPECT_EQ(c.transfer(8), kNak) << "no value operation before it";
  ASSERT_EQ(c.auth(8, KeyType::kB), kOk);
  EXPECT_EQ(c.value(m1::cmd::kIncrement, 8, 1000), kOk);
  EXPECT_EQ(c.transfer(8), kOk);
  EXPECT_EQ(c.purse(), 1850);
  EXPECT_EQ(c.value(m1::cmd::kRestore, 8, 0), kOk);
  EXPECT_EQ(c.transfer(9), kOk);
  EXPECT_EQ(c.card.block(9), m1::value_block(1850, 8)) << "the backup carries block 8's address";
  EXPECT_EQ(c.value(m1::cmd::kDecrement, 10, 1), kNak) << "block 10 is no value block";
}

TEST(M1Card, TrailersHideKeyAAndGuardTheirFields) {
  Card c;
  ASSERT_EQ(c.auth(8, KeyType::kA), kOk);
  const Bytes t = c.read(11);
  ASSERT_EQ(t.size(), 16u);
  EXPECT_EQ(to_hex(ByteView(t.data(), 6)), "000000000000") << "key A never reads back";
  EXPECT_EQ(to_hex(ByteView(t.data() + 10, 6)), "000000000000") << "key B not readable (011)";
  EXPECT_EQ(m1::decode_access(t.data() + 6), m1::kPurseSectorAccess);
  const m1::Key6 new_a{1, 2, 3, 4, 5, 6};
  EXPECT_EQ(c.write(11, m1::trailer_block(new_a, m1::kPurseSectorAccess, key(2, KeyType::kB))),
            kNak)
      << "key A may not change keys (011)";
  ASSERT_EQ(c.auth(8, KeyType::kB), kOk);
  EXPECT_EQ(c.write(11, m1::trailer_block(new_a, m1::kPurseSectorAccess, key(2, KeyType::kB))),
            kOk);
  EXPECT_EQ(c.auth(8, KeyType::kA), kSilent) << "the old key A is gone";
  c.card.reset();
  EXPECT_EQ(c.auth(8, KeyType::kA, new_a), kOk);
  EXPECT_EQ(c.write(0, m1::Block{}), kNak) << "another sector, and block 0 is read-only";
}

TEST(M1Card, TransportSectorsAreOpenToKeyAAndClosedToAReadableKeyB) {
  Card c;
  EXPECT_EQ(c.auth(40, KeyType::kA, m1::kTransportKey), kOk);
  m1::Block data{};
  data[0] = 0x42;
  EXPECT_EQ(c.write(40, data), kOk);
  EXPECT_EQ(take<16>(c.read(40), 0), data);
  EXPECT_EQ(c.auth(40, KeyType::kB, m1::kTransportKey), kOk);
  EXPECT_EQ(c.read(40), Bytes{kNak}) << "key B is readable in FF0780, so it opens nothing";
  EXPECT_EQ(c.card.heap_bytes(), 7u * 64) << "writing sector 10 materialised it";
}

TEST(M1Card, ABlockWriteCutByPowerLossIsTornAndTheCardFallsSilent) {
  Card c;
  ASSERT_EQ(c.auth(24, KeyType::kA), kOk);
  const m1::Block old = c.card.block(24);
  m1::Block fresh;
  fresh.fill(0x77);
  ASSERT_TRUE(c.card.arm_power_cut(0));
  Bytes w{m1::cmd::kWrite, 24};
  put_bytes(w, fresh);
  EXPECT_TRUE(c.send(w).empty());
  EXPECT_TRUE(c.read(24).empty()) << "silent until reset";
  c.card.reset();
  const m1::Block torn = c.card.block(24);
  EXPECT_EQ(take<8>(torn, 0), take<8>(fresh, 0));
  EXPECT_EQ(take<8>(torn, 8), take<8>(old, 8));
  EXPECT_FALSE(m1::ProcessInfo::decode(torn)) << "the XOR check catches it";
}

TEST(M1Card, HotStateIsSmallAndOnlyThePurseSectorsAreOnTheHeap) {
  static_assert(sizeof(M1Card) <= 256, "a city of 20 M cards");
  Card c;
  EXPECT_EQ(c.card.heap_bytes(), 6u * 64) << "sectors 1-6; the rest reads as blank";
  EXPECT_EQ(c.card.block(0), m1::manufacturer_block(c.card.uid()));
  EXPECT_EQ(m1::decode_access(c.card.block(63).data() + 6), m1::kTransportAccess);
}

TEST(M1Card, TheDirectLinkAnswersAsAPn532Would) {
  Card c;
  DirectM1Link link(c.card);
  Bytes auth{m1::cmd::kAuthA, 8};
  put_bytes(auth, key(2, KeyType::kA));
  put_bytes(auth, c.card.uid());
  EXPECT_EQ(*link.transceive(auth), Bytes{m1::status::kOk});
  const Result<Bytes> read = link.transceive(Bytes{m1::cmd::kRead, 8});
  ASSERT_TRUE(read.is_ok());
  ASSERT_EQ(read->size(), 17u);
  EXPECT_EQ((*read)[0], m1::status::kOk);
  EXPECT_EQ(m1::decode_value(take<16>(*read, 1))->value, 1000);
  EXPECT_EQ(*link.transceive(Bytes{m1::cmd::kRead, 12}), Bytes{m1::status::kTimeout}) << "NAK";
  Bytes wrong = auth;
  wrong[2] ^= 1;
  EXPECT_EQ(*link.transceive(wrong), Bytes{m1::status::kMifareError});
  EXPECT_EQ(*link.transceive(Bytes{m1::cmd::kRead, 8}), Bytes{m1::status::kTimeout})
      << "a halted card is silent";
  c.card.arm_power_cut(0);
  EXPECT_EQ(link.transceive(Bytes{m1::cmd::kRead, 8}).status().code(), Errc::kTorn);
}

TEST(M1Card, ExchangesOnADirectLinkAreTimedAndTheFirstPaysForActivation) {
  Card c;
  std::vector<std::int64_t> us;
  DirectM1Link link(c.card, [&](ByteView, ByteView, std::int64_t d) { us.push_back(d); });
  Bytes auth{m1::cmd::kAuthA, 8};
  put_bytes(auth, key(2, KeyType::kA));
  put_bytes(auth, c.card.uid());
  ASSERT_TRUE(link.transceive(auth).is_ok());
  ASSERT_TRUE(link.transceive(auth).is_ok());
  ASSERT_TRUE(link.transceive(Bytes{m1::cmd::kRead, 8}).is_ok());
  ASSERT_EQ(us.size(), 3u);
  EXPECT_EQ(us[0] - us[1], timing::activation_us(M1Profile::standard().air, ReaderTiming{}, false));
  EXPECT_GT(us[2], 0);
  EXPECT_EQ(link.elapsed_us(), us[0] + us[1] + us[2]);
}

}  // namespace
}  // namespace citycard::devices
