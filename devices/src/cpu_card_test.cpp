#include "citycard/devices/cpu_card.h"

#include <gtest/gtest.h>

#include "citycard/devices/psam.h"
#include "citycard/protocol/crypto.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

using protocol::Command;
using protocol::Response;
using protocol::crypto::Algorithm;
using testing::card_image;
using testing::kTerminal;
using testing::send;
namespace sw = protocol::sw;
namespace crypto = protocol::crypto;

constexpr std::string_view kSelectJtt = "00A4040008A000000632010105";
constexpr std::string_view kSelectPsamDf = "00A40000028011";
const protocol::DateTime7 kWhen = array_from_hex<7>("20240315081530");

Command init_purchase(std::uint32_t amount_fen, std::uint8_t key_index = 1) {
  Bytes d;
  put_u8(d, key_index);
  put_u32be(d, amount_fen);
  put_bytes(d, kTerminal);
  return Command{0x80, 0x50, 0x01, 0x02, d, 0x0F};
}

Command debit(std::uint32_t terminal_seq, const protocol::DateTime7& dt,
              const protocol::Mac4& mac1) {
  Bytes d;
  put_u32be(d, terminal_seq);
  put_bytes(d, dt);
  put_bytes(d, mac1);
  return Command{0x80, 0x54, 0x01, 0x00, d, 0x08};
}

// One purchase driven APDU by APDU, the card and the PSAM each seen only through bytes.
struct RawPurchase {
  Response init;
  Response debit;
  Response verify;
  std::uint32_t terminal_seq = 0;
  protocol::Mac4 mac1{};
};

RawPurchase raw_purchase(CpuCard& card, Psam& psam, std::uint32_t amount_fen,
                         bool corrupt_mac1 = false) {
  RawPurchase r;
  EXPECT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  r.init = send(card, init_purchase(amount_fen));
  if (!r.init.ok()) return r;
  EXPECT_EQ(send(psam, kSelectPsamDf).sw, sw::kOk);
  const ByteView ir = r.init.data;
  Bytes m;
  put_bytes(m, ir.subspan(11, 4));  // card random
  put_bytes(m, ir.subspan(4, 2));   // offline counter
  put_u32be(m, amount_fen);
  put_u8(m, protocol::txn::kPurchase);
  put_bytes(m, kWhen);
  put_u8(m, ir[9]);   // key version
  put_u8(m, ir[10]);  // algorithm id
  put_bytes(m, card.serial());
  put_bytes(m, array_from_hex<8>("3100310001000000"));
  const Response mac1 = send(psam, Command{0x80, 0x70, 0x00, 0x00, m, 0x08});
  EXPECT_EQ(mac1.sw, sw::kOk);
  r.terminal_seq = get_u32be(mac1.data, 0);
  r.mac1 = take<4>(mac1.data, 4);
  if (corrupt_mac1) r.mac1[0] ^= 0x01;
  r.debit = send(card, debit(r.terminal_seq, kWhen, r.mac1));
  if (!r.debit.ok()) return r;
  r.verify = send(
      psam,
      Command{0x80, 0x72, 0x00, 0x00, Bytes(r.debit.data.begin() + 4, r.debit.data.end()), {}});
  return r;
}

class CpuCardPurchase : public ::testing::TestWithParam<Algorithm> {};

TEST_P(CpuCardPurchase, MacsTacAndPurseMatchAnIndependentComputation) {
  const protocol::CardImage image = card_image(42, 1000, GetParam());
  CpuCard card(image, sim::Rng(7));
  Psam psam(testing::psam_image());

  const RawPurchase p = raw_purchase(card, psam, 200);
  ASSERT_EQ(p.init.sw, sw::kOk);
  ASSERT_EQ(p.init.data.size(), 15u);
  EXPECT_EQ(get_u32be(p.init.data, 0), 1000u);
  EXPECT_EQ(get_u16be(p.init.data, 4), 0u);
  EXPECT_EQ(p.init.data[10], static_cast<std::uint8_t>(GetParam()));
  ASSERT_EQ(p.debit.sw, sw::kOk) << "the PSAM's MAC1 must be one the card accepts";
  ASSERT_EQ(p.debit.data.size(), 8u);
  EXPECT_EQ(p.verify.sw, sw::kOk) << "the card's MAC2 must be one the PSAM accepts";

  // Recompute from the card's own keys, not the PSAM's.
  const protocol::Random4 random = take<4>(p.init.data, 11);
  const crypto::SessionKey sespk =
      crypto::purchase_session_key(GetParam(), image.dpk, random, 0, p.terminal_seq);
  EXPECT_EQ(to_hex(p.mac1),
            to_hex(crypto::purchase_mac1(sespk, 200, protocol::txn::kPurchase, kTerminal, kWhen)));
  const protocol::Mac4 tac =
      crypto::purchase_tac(crypto::tac_key(GetParam(), image.dtk), 200, protocol::txn::kPurchase,
                           kTerminal, p.terminal_seq, kWhen);
  EXPECT_EQ(to_hex(ByteView(p.debit.data.data(), 4)), to_hex(tac));
  EXPECT_EQ(to_hex(ByteView(p.debit.data.data() + 4, 4)),
            to_hex(crypto::purchase_mac2(sespk, 200)));

  EXPECT_EQ(card.balance_fen(), 800u);
  EXPECT_EQ(card.offline_counter(), 1);
  EXPECT_EQ(send(card, "805C000204").data, from_hex("00000320"));
}

INSTANTIATE_TEST_SUITE_P(Algorithms, CpuCardPurchase,
                         ::testing::Values(Algorithm::kTripleDes, Algorithm::kSm4));

TEST(CpuCard, WrongMac1Answers9302AndChangesNothing) {
  CpuCard card(card_image(1, 1000), sim::Rng(1));
  Psam psam(testing::psam_image());
  const RawPurchase p = raw_purchase(card, psam, 300, /*corrupt_mac1=*/true);
  EXPECT_EQ(p.debit.sw, sw::kMacInvalid);
  EXPECT_EQ(card.balance_fen(), 1000u);
  EXPECT_EQ(card.offline_counter(), 0);
  EXPECT_TRUE(card.log().empty());
  EXPECT_EQ(send(card, "805A0006020001").sw, sw::kMacError) << "no proof for a failed debit";
  // The failed DEBIT ended the session: the right MAC1 cannot be tried within it.
  EXPECT_EQ(send(card, debit(p.terminal_seq, kWhen, p.mac1)).sw, sw::kCommandNotAllowed);
}

TEST(CpuCard, InsufficientBalanceAnswers9401AtInitialize) {
  CpuCard card(card_image(1, 150), sim::Rng(1));
  EXPECT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  EXPECT_EQ(send(card, init_purchase(151)).sw, sw::kInsufficientBalance);
  EXPECT_EQ(send(card, init_purchase(150)).sw, sw::kOk);
}

TEST(CpuCard, OverdraftCoversWhatTheBalanceCannot) {
  protocol::CardImage image = card_image(1, 100);
  image.overdraft_limit_fen = 500;
  CpuCard card(image, sim::Rng(1));
  Psam psam(testing::psam_image());
  EXPECT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  EXPECT_EQ(send(card, init_purchase(601)).sw, sw::kInsufficientBalance);
  const RawPurchase p = raw_purchase(card, psam, 300);
  ASSERT_EQ(p.debit.sw, sw::kOk);
  EXPECT_EQ(get_u24be(p.init.data, 6), 500u);
  EXPECT_EQ(card.balance_fen(), 0u);
  EXPECT_EQ(card.overdraft_used_fen(), 200u);
  EXPECT_EQ(send(card, init_purchase(301)).sw, sw::kInsufficientBalance);
  EXPECT_EQ(send(card, init_purchase(300)).sw, sw::kOk);
}

TEST(CpuCard, DebitNeedsTheInitializeJustBeforeIt) {
  CpuCard card(card_image(1, 1000), sim::Rng(1));
  const protocol::Mac4 mac1{};
  EXPECT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  EXPECT_EQ(send(card, debit(1, kWhen, mac1)).sw, sw::kCommandNotAllowed);
  EXPECT_EQ(send(card, init_purchase(100)).sw, sw::kOk);
  EXPECT_EQ(send(card, "805C000204").sw, sw::kOk);
  EXPECT_EQ(send(card, debit(1, kWhen, mac1)).sw, sw::kCommandNotAllowed)
      << "any other command in between ends the purchase session";
}

TEST(CpuCard, CommandsBeforeSelect) {
  CpuCard card(card_image(1, 1000), sim::Rng(1));
  EXPECT_EQ(send(card, "805C000204").sw, sw::kConditionsNotSatisfied);
  EXPECT_EQ(send(card, init_purchase(1)).sw, sw::kConditionsNotSatisfied);
  EXPECT_EQ(send(card, "805A0006020001").sw, sw::kConditionsNotSatisfied);
  EXPECT_EQ(send(card, "00B2011C17").sw, sw::kFileNotFound);
  EXPECT_EQ(send(card, "00B095001E").sw, sw::kFileNotFound);
}

TEST(CpuCard, SelectAnswersFciForItsAidAnd6A82OtherwiseAndResetDeselects) {
  CpuCard card(card_image(1, 1000), sim::Rng(1));
  const Response fci = send(card, kSelectJtt);
  ASSERT_EQ(fci.sw, sw::kOk);
  ASSERT_GE(fci.data.size(), 12u);
  EXPECT_EQ(fci.data[0], 0x6F);
  EXPECT_EQ(Bytes(fci.data.begin() + 4, fci.data.begin() + 12),
            protocol::aid_for(protocol::Family::kJtt978));
  EXPECT_EQ(send(card, "00A4040009A00000000386980701").sw, sw::kFileNotFound);
  EXPECT_EQ(send(card, "805C000204").sw, sw::kOk) << "a failed SELECT keeps the selection";
  card.reset();
  EXPECT_EQ(send(card, "805C000204").sw, sw::kConditionsNotSatisfied);
  EXPECT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  EXPECT_EQ(send(card, "00A40000023F00").sw, sw::kOk);
  EXPECT_EQ(send(card, "805C000204").sw, sw::kConditionsNotSatisfied) << "MF leaves the ADF";
}

TEST(CpuCard, MalformedCommandsGetTheirStatusWords) {
  CpuCard card(card_image(1, 1000), sim::Rng(1));
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  EXPECT_EQ(send(card, "805C00").sw, sw::kWrongLength) << "shorter than a header";
  EXPECT_EQ(send(card, "8050010205010000").sw, sw::kWrongLength) << "Lc says 5, 3 follow";
  EXPECT_EQ(send(card, "805001021001000000640001020304050607080A").sw, sw::kWrongLength);
  EXPECT_EQ(send(card, "805001020A01000000640001020304").sw, sw::kWrongLength) << "Lc 0A";
  EXPECT_EQ(send(card, "8054010004000000010F").sw, sw::kWrongLength);
  EXPECT_EQ(send(card, "805C00020101").sw, sw::kWrongLength) << "GET BALANCE takes no data";
  EXPECT_EQ(send(card, "805000020B0100000064000102030405").sw, sw::kWrongP1P2)
      << "INITIALIZE FOR LOAD is not modelled";
  EXPECT_EQ(send(card, "805C000104").sw, sw::kWrongP1P2) << "ED balance";
  EXPECT_EQ(send(card, "80540200").sw, sw::kWrongP1P2);
  EXPECT_EQ(send(card, "00B2001C17").sw, sw::kWrongP1P2) << "record 0";
  EXPECT_EQ(send(card, "00B201C017").sw, sw::kWrongP1P2) << "P2 not 'record number in P1'";
  EXPECT_EQ(send(card, "00A4040C08A000000632010105").sw, sw::kWrongP1P2);
  EXPECT_EQ(send(card, "80990000").sw, sw::kInsNotSupported);
  EXPECT_EQ(send(card, "00500102").sw, sw::kInsNotSupported) << "purse INS under CLA 00";
  EXPECT_EQ(send(card, "905C000204").sw, sw::kClaNotSupported);
  EXPECT_EQ(send(card, "00B0810001").sw, sw::kFileNotFound) << "SFI 0x01 is no file here";
  EXPECT_EQ(send(card, "00B0951E01").sw, 0x6B00) << "offset past the end of 0x15";
  EXPECT_EQ(send(card, init_purchase(10, 2)).sw, sw::kKeyIndexNotSupported);
}

TEST(CpuCard, LogRecordsReadBackNewestFirstAndTheCyclicFileKeepsTen) {
  CpuCard card(card_image(9, 100'000), sim::Rng(3));
  Psam psam(testing::psam_image());
  for (std::uint32_t i = 1; i <= 12; ++i) ASSERT_EQ(raw_purchase(card, psam, i).debit.sw, sw::kOk);

  const auto log = card.log();
  ASSERT_EQ(log.size(), CpuCard::kLogRecords);
  for (std::uint8_t rec = 1; rec <= 10; ++rec) {
    const Response r = send(card, Command{0x00, 0xB2, rec, 0xC4, {}, 0x17});
    ASSERT_EQ(r.sw, sw::kOk);
    const auto decoded = protocol::LogRecord::decode(r.data);
    ASSERT_TRUE(decoded);
    EXPECT_EQ(*decoded, log[rec - 1u]);
    // Record 1 is purchase 12 (counter 11), record 10 purchase 3 (counter 2).
    const std::uint16_t counter = static_cast<std::uint16_t>(12 - rec);
    EXPECT_EQ(*decoded, (protocol::LogRecord{counter, 0, 12u - rec + 1u, protocol::txn::kPurchase,
                                             kTerminal, kWhen}));
  }
  EXPECT_EQ(send(card, "00B20BC417").sw, sw::kRecordNotFound);
  EXPECT_EQ(send(card, "00B201F417").sw, sw::kFileNotFound) << "travel file not modelled";
}

TEST(CpuCard, ReadRecordOfAnEmptyLogIsRecordNotFound) {
  CpuCard card(card_image(9, 100), sim::Rng(3));
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  EXPECT_EQ(send(card, "00B201C417").sw, sw::kRecordNotFound);
}

TEST(CpuCard, IssuerFileCarriesSerialDiversificationDataAndValidity) {
  const protocol::CardImage image = card_image(0x1122334455667788ull, 100);
  CpuCard card(image, sim::Rng(3));
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  const Response r = send(card, "00B095001E");
  ASSERT_EQ(r.sw, sw::kOk);
  ASSERT_EQ(r.data.size(), 30u);
  EXPECT_EQ(take<8>(r.data, 0), image.issuer_data);
  EXPECT_EQ(to_hex(ByteView(r.data.data() + 10, 10)), "00001122334455667788");
  EXPECT_EQ(take<4>(r.data, 20), image.valid_from);
  EXPECT_EQ(take<4>(r.data, 24), image.valid_to);
  EXPECT_EQ(send(card, "00B0950C08").data, from_hex("1122334455667788")) << "offset and Le";
}

TEST(CpuCard, TransactionProveReturnsTheLastPurchasesMac2AndTac) {
  CpuCard card(card_image(5, 1000), sim::Rng(5));
  Psam psam(testing::psam_image());
  const RawPurchase p = raw_purchase(card, psam, 250);
  ASSERT_EQ(p.debit.sw, sw::kOk);
  card.reset();  // the proof is what a terminal needs after the card left the field
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  const Response proof = send(card, "805A0006020001");  // counter used (0) plus one
  ASSERT_EQ(proof.sw, sw::kOk);
  EXPECT_EQ(to_hex(proof.data),
            to_hex(ByteView(p.debit.data.data() + 4, 4)) + to_hex(ByteView(p.debit.data.data(), 4)))
      << "MAC2 then TAC";
  EXPECT_EQ(send(card, "805A0006020000").sw, sw::kMacError);
  EXPECT_EQ(send(card, "805A0006020002").sw, sw::kMacError);
  EXPECT_EQ(send(card, "805A0009020001").sw, sw::kMacError) << "not a composite purchase";
  EXPECT_EQ(send(card, "805A000603000100").sw, sw::kWrongLength);
}

TEST(CpuCard, StaysSmallEnoughForACityOfMillionsOfCards) {
  EXPECT_LE(sizeof(CpuCard), 512u);
}

TEST(CpuCard, CardRandomsComeFromItsOwnRng) {
  auto random_of = [](std::uint64_t seed) {
    CpuCard card(card_image(1, 1000), sim::Rng(seed));
    EXPECT_EQ(send(card, kSelectJtt).sw, sw::kOk);
    const Response a = send(card, init_purchase(1));
    const Response b = send(card, init_purchase(1));
    return to_hex(ByteView(a.data.data() + 11, 4)) + to_hex(ByteView(b.data.data() + 11, 4));
  };
  EXPECT_EQ(random_of(11), random_of(11));
  EXPECT_NE(random_of(11), random_of(12));
  const std::string two = random_of(11);
  EXPECT_NE(two.substr(0, 8), two.substr(8)) << "a fresh challenge per INITIALIZE";
}

TEST(CpuCard, OfflineCounterSaturatesInsteadOfWrapping) {
  CpuCard card(card_image(1, 100'000), sim::Rng(1));
  Psam psam(testing::psam_image());
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  ASSERT_EQ(send(psam, kSelectPsamDf).sw, sw::kOk);
  // Free purchases walk the counter up to FFFF through the real DEBIT path.
  for (std::uint32_t i = 0; i < 0xFFFF; ++i) {
    if (raw_purchase(card, psam, 0).debit.sw != sw::kOk) FAIL() << "purchase " << i;
  }
  EXPECT_EQ(card.offline_counter(), 0xFFFF);
  EXPECT_EQ(send(card, init_purchase(0)).sw, sw::kConditionsNotSatisfied);
  EXPECT_EQ(card.balance_fen(), 100'000u);
}

}  // namespace
}  // namespace citycard::devices
