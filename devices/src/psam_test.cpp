#include "citycard/devices/psam.h"

#include <gtest/gtest.h>

#include "citycard/devices/card_link.h"
#include "citycard/protocol/crypto.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

using protocol::Command;
using protocol::Response;
using protocol::crypto::Algorithm;
using testing::kTerminal;
using testing::send;
namespace sw = protocol::sw;
namespace crypto = protocol::crypto;

const protocol::Random4 kRandom = array_from_hex<4>("a1b2c3d4");
const protocol::DateTime7 kWhen = array_from_hex<7>("20240315081530");
const protocol::Serial8 kSerial = array_from_hex<8>("3100000000001234");

Command mac1_command(std::uint16_t counter, std::uint32_t amount_fen,
                     Algorithm alg = Algorithm::kTripleDes, std::uint8_t key_version = 1,
                     std::uint8_t type = protocol::txn::kPurchase) {
  Bytes d;
  put_bytes(d, kRandom);
  put_u16be(d, counter);
  put_u32be(d, amount_fen);
  put_u8(d, type);
  put_bytes(d, kWhen);
  put_u8(d, key_version);
  put_u8(d, static_cast<std::uint8_t>(alg));
  put_bytes(d, kSerial);
  put_bytes(d, array_from_hex<8>("3100310001000000"));
  return Command{0x80, 0x70, 0x00, 0x00, d, 0x08};
}

Psam selected_psam(protocol::PsamImage image = testing::psam_image()) {
  Psam psam(image);
  EXPECT_EQ(send(psam, "00A40000028011").sw, sw::kOk);
  return psam;
}

class PsamMac1 : public ::testing::TestWithParam<Algorithm> {};

TEST_P(PsamMac1, MatchesAnIndependentComputationAndTheSequenceIncrements) {
  const protocol::IssuerKeys keys = testing::issuer_keys();
  protocol::PsamImage image = testing::psam_image();
  image.next_sequence = 0x0001FFFF;  // the session key takes only the low two bytes
  Psam psam = selected_psam(image);
  for (std::uint32_t seq = 0x0001FFFF; seq <= 0x00020001; ++seq) {
    const Response r = send(psam, mac1_command(7, 350, GetParam()));
    ASSERT_EQ(r.sw, sw::kOk);
    ASSERT_EQ(r.data.size(), 8u);
    EXPECT_EQ(get_u32be(r.data, 0), seq);
    const crypto::Key16 dpk = crypto::diversify(GetParam(), keys.purchase, kSerial);
    const crypto::SessionKey sespk = crypto::purchase_session_key(GetParam(), dpk, kRandom, 7, seq);
    EXPECT_EQ(
        to_hex(ByteView(r.data.data() + 4, 4)),
        to_hex(crypto::purchase_mac1(sespk, 350, protocol::txn::kPurchase, kTerminal, kWhen)));
  }
  EXPECT_EQ(psam.next_sequence(), 0x00020002u);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, PsamMac1,
                         ::testing::Values(Algorithm::kTripleDes, Algorithm::kSm4));

TEST(Psam, VerifyMac2RejectsAFlippedBitAndAcceptsTheRightOne) {
  const protocol::IssuerKeys keys = testing::issuer_keys();
  Psam psam = selected_psam();
  const Response r = send(psam, mac1_command(3, 200));
  ASSERT_EQ(r.sw, sw::kOk);
  const crypto::Key16 dpk = crypto::diversify(Algorithm::kTripleDes, keys.purchase, kSerial);
  const crypto::SessionKey sespk =
      crypto::purchase_session_key(Algorithm::kTripleDes, dpk, kRandom, 3, get_u32be(r.data, 0));
  const protocol::Mac4 mac2 = crypto::purchase_mac2(sespk, 200);
  for (int bit = 0; bit < 32; ++bit) {
    protocol::Mac4 flipped = mac2;
    flipped[static_cast<std::size_t>(bit / 8)] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    EXPECT_EQ(
        send(psam, Command{0x80, 0x72, 0x00, 0x00, Bytes(flipped.begin(), flipped.end()), {}}).sw,
        sw::kMacInvalid)
        << "bit " << bit;
  }
  const Command right{0x80, 0x72, 0x00, 0x00, Bytes(mac2.begin(), mac2.end()), {}};
  EXPECT_EQ(send(psam, right).sw, sw::kOk) << "a wrong MAC2 keeps the session";
  EXPECT_EQ(send(psam, right).sw, sw::kConditionsNotSatisfied) << "a right one ends it";
}

TEST(Psam, GeneralMacIsTheBatchKeyTdesMacAlsoWhenChained) {
  const protocol::PsamImage image = testing::psam_image();
  Psam psam = selected_psam(image);
  const Bytes a = from_hex("000102030405060708090a0b0c0d0e0f1011");
  const Bytes b = from_hex("2021222324");
  Response r = send(psam, Command{0x80, 0xFA, 0x05, 0x00, a, 4});
  ASSERT_EQ(r.sw, sw::kOk);
  EXPECT_EQ(to_hex(r.data), to_hex(crypto::tdes_mac(image.batch_key, a)));

  EXPECT_EQ(send(psam, Command{0x80, 0xFA, 0x07, 0x00, a, {}}).sw, sw::kOk);
  r = send(psam, Command{0x80, 0xFA, 0x05, 0x00, b, 4});
  Bytes ab = a;
  put_bytes(ab, b);
  EXPECT_EQ(to_hex(r.data), to_hex(crypto::tdes_mac(image.batch_key, ab)));

  // Another command in between breaks the chain: the MAC covers only the last block.
  EXPECT_EQ(send(psam, Command{0x80, 0xFA, 0x07, 0x00, a, {}}).sw, sw::kOk);
  EXPECT_EQ(send(psam, "00B0960006").sw, sw::kOk);
  r = send(psam, Command{0x80, 0xFA, 0x05, 0x00, b, 4});
  EXPECT_EQ(to_hex(r.data), to_hex(crypto::tdes_mac(image.batch_key, b)));
}

TEST(Psam, GeneralMacChainHasALimit) {
  Psam psam = selected_psam();
  const Bytes block(248, 0x5A);
  std::size_t sent = 0;
  while (sent + block.size() <= Psam::kMacInputBytesMax) {
    ASSERT_EQ(send(psam, Command{0x80, 0xFA, 0x07, 0x00, block, {}}).sw, sw::kOk);
    sent += block.size();
  }
  EXPECT_EQ(send(psam, Command{0x80, 0xFA, 0x05, 0x00, block, 4}).sw, sw::kWrongLength);
}

TEST(Psam, TerminalIdIsReadableBeforeAndAfterSelect) {
  Psam psam(testing::psam_image());
  Response r = send(psam, "00B0960006");
  ASSERT_EQ(r.sw, sw::kOk);
  EXPECT_EQ(take<6>(r.data, 0), kTerminal);
  EXPECT_EQ(send(psam, "00A40000028011").sw, sw::kOk);
  EXPECT_EQ(send(psam, "00B0960302").data, from_hex("0304"));
}

TEST(Psam, CommandsNeedTheApplicationSelected) {
  Psam psam(testing::psam_image());
  EXPECT_EQ(send(psam, mac1_command(0, 1)).sw, sw::kConditionsNotSatisfied);
  EXPECT_EQ(send(psam, "8072000004AABBCCDD").sw, sw::kConditionsNotSatisfied);
  EXPECT_EQ(send(psam, "80FA050001AA04").sw, sw::kConditionsNotSatisfied);
  EXPECT_EQ(psam.next_sequence(), 1u);
  EXPECT_EQ(send(psam, "00A40000028011").sw, sw::kOk);
  EXPECT_EQ(send(psam, "8072000004AABBCCDD").sw, sw::kConditionsNotSatisfied) << "no 8070 yet";
  psam.reset();
  EXPECT_EQ(send(psam, mac1_command(0, 1)).sw, sw::kConditionsNotSatisfied);
}

TEST(Psam, MalformedAndUnsupportedInputGetTheirStatusWords) {
  Psam psam = selected_psam();
  EXPECT_EQ(send(psam, "00A40000021001").sw, sw::kOk) << "CJ/T 166 DF";
  EXPECT_EQ(send(psam, "00A40000021002").sw, sw::kFileNotFound);
  EXPECT_EQ(send(psam, "00A4040002801100").sw, sw::kWrongP1P2);
  EXPECT_EQ(send(psam, "00A400000380110000").sw, sw::kWrongLength);
  EXPECT_EQ(send(psam, "807000").sw, sw::kWrongLength);
  Command short_input = mac1_command(0, 1);
  short_input.data.pop_back();
  EXPECT_EQ(send(psam, short_input).sw, sw::kWrongLength);
  Command bad_p2 = mac1_command(0, 1);
  bad_p2.p2 = 1;
  EXPECT_EQ(send(psam, bad_p2).sw, sw::kWrongP1P2);
  EXPECT_EQ(send(psam, mac1_command(0, 1, Algorithm::kTripleDes, 2)).sw, sw::kKeyIndexNotSupported);
  Command bad_alg = mac1_command(0, 1);
  bad_alg.data[19] = 0x07;
  EXPECT_EQ(send(psam, bad_alg).sw, sw::kWrongData);
  EXPECT_EQ(send(psam, mac1_command(0, 1, Algorithm::kTripleDes, 1, protocol::txn::kLoadEp)).sw,
            sw::kWrongData);
  EXPECT_EQ(send(psam, "8072000003445566").sw, sw::kWrongLength);
  EXPECT_EQ(send(psam, "80FA0600014404").sw, sw::kWrongP1P2);
  EXPECT_EQ(send(psam, "80FA0500").sw, sw::kWrongLength) << "nothing to MAC";
  EXPECT_EQ(send(psam, "00B0970006").sw, sw::kFileNotFound);
  EXPECT_EQ(send(psam, "00B0960606").sw, 0x6B00);
  EXPECT_EQ(send(psam, "80CA0000").sw, sw::kInsNotSupported);
  EXPECT_EQ(send(psam, "84700000").sw, sw::kClaNotSupported);
  EXPECT_EQ(psam.next_sequence(), 1u) << "no refused 8070 used a sequence number";
}

TEST(Psam, ExhaustedSequenceRefusesMac1) {
  protocol::PsamImage image = testing::psam_image();
  image.next_sequence = UINT32_MAX - 1;
  Psam psam = selected_psam(image);
  EXPECT_EQ(send(psam, mac1_command(0, 1)).sw, sw::kOk);
  EXPECT_EQ(send(psam, mac1_command(0, 1)).sw, sw::kConditionsNotSatisfied);
  EXPECT_EQ(psam.next_sequence(), UINT32_MAX);
}

// ---- 801A / 80FA: the blacklist lock's MAC ---------------------------------------------------

Command diversify_command(std::uint8_t usage, std::uint8_t version = 1) {
  Bytes d;
  put_bytes(d, kSerial);
  put_bytes(d, Bytes(8, 0x00));  // group data
  return Command{0x80, 0x1A, usage, version, d, std::nullopt};
}

TEST(Psam, DiversifiedMacIsTheCardsApplicationBlockMac) {
  const protocol::IssuerKeys keys = testing::issuer_keys();
  const protocol::Random4 challenge = array_from_hex<4>("0a0b0c0d");
  for (Algorithm alg : {Algorithm::kTripleDes, Algorithm::kSm4}) {
    Psam psam = selected_psam();
    const std::uint8_t usage =
        alg == Algorithm::kTripleDes ? Psam::kUsageMaintenance : Psam::kUsageMaintenanceSm4;
    ASSERT_EQ(send(psam, diversify_command(usage)).sw, sw::kOk);
    Bytes d(challenge.begin(), challenge.end());
    d.resize(alg == Algorithm::kTripleDes ? 8 : 16, 0x00);  // IV
    put_bytes(d, from_hex("841E000004"));
    const Response mac = send(psam, Command{0x80, 0xFA, 0x05, 0x00, d, 4});
    ASSERT_EQ(mac.sw, sw::kOk);
    const crypto::Key16 damk = crypto::diversify(alg, keys.maintenance, kSerial);
    EXPECT_EQ(to_hex(mac.data), to_hex(crypto::application_block_mac(alg, damk, challenge, 0x00)));
  }
}

TEST(Psam, TheDiversifiedKeyServesOnlyTheNext80FA) {
  const protocol::PsamImage image = testing::psam_image();
  Psam psam = selected_psam(image);
  const Bytes data = from_hex("0102030405060708841E000004");
  ASSERT_EQ(send(psam, diversify_command(Psam::kUsageMaintenance)).sw, sw::kOk);
  EXPECT_EQ(send(psam, "8072000004AABBCCDD").sw, sw::kConditionsNotSatisfied);
  const Response mac = send(psam, Command{0x80, 0xFA, 0x05, 0x00, data, 4});
  ASSERT_EQ(mac.sw, sw::kOk);
  EXPECT_EQ(to_hex(mac.data), to_hex(crypto::tdes_mac(image.batch_key, data)))
      << "back to the batch key";
  ASSERT_EQ(send(psam, diversify_command(Psam::kUsageMaintenance)).sw, sw::kOk);
  EXPECT_EQ(send(psam, Command{0x80, 0xFA, 0x05, 0x00, Bytes(8, 0), 4}).sw, sw::kWrongLength)
      << "an IV and nothing to MAC";
}

TEST(Psam, InitDiversificationAnswersItsStatusWords) {
  Psam fresh(testing::psam_image());
  EXPECT_EQ(send(fresh, diversify_command(Psam::kUsageMaintenance)).sw, sw::kConditionsNotSatisfied)
      << "no DF selected";
  Psam psam = selected_psam();
  EXPECT_EQ(send(psam, diversify_command(0x01)).sw, sw::kReferencedDataNotFound) << "usage";
  EXPECT_EQ(send(psam, diversify_command(Psam::kUsageMaintenance, 2)).sw,
            sw::kReferencedDataNotFound)
      << "key version";
  EXPECT_EQ(send(psam, "801A2801080102030405060708").sw, sw::kWrongLength) << "serial only";
}

TEST(Psam, ReportsProcessingTimeAndAContactInterface) {
  Psam psam = selected_psam();
  EXPECT_EQ(psam.link_timing().interface, LinkTiming::Interface::kContact);
  ASSERT_EQ(send(psam, mac1_command(0, 100)).sw, sw::kOk);
  EXPECT_EQ(psam.last_processing_us(),
            PsamProfile::standard().mac1_us + PsamProfile::standard().eeprom_write_us)
      << "MAC1 and the sequence counter's EEPROM write";
  std::vector<std::int64_t> durations;
  DirectLink link(
      psam, [&](const Command&, const Response&, std::int64_t us) { durations.push_back(us); });
  ASSERT_TRUE(link.transceive(mac1_command(0, 100)).is_ok());
  ASSERT_EQ(durations.size(), 1u);
  // 8070 is case 4: 5 + 1 + 36 + 2, then GET RESPONSE 5 + 1 + 8 + 2 = 60 characters of
  // 12 etu at 372/(4 * 3.5712 MHz).
  const std::int64_t transfer_us =
      (60 * 12 * 372 * 1'000'000'000LL / (4LL * 3'571'200) + 999) / 1000;
  EXPECT_EQ(durations[0], transfer_us + psam.last_processing_us() + 100);
}

}  // namespace
}  // namespace citycard::devices
