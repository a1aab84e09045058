#include "citycard/devices/cpu_card.h"

#include <gtest/gtest.h>

#include "citycard/devices/card_keys.h"
#include "citycard/devices/psam.h"
#include "citycard/protocol/capp.h"
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

// `capp` non-empty: a composite purchase (INITIALIZE P1 03, type 09) writing these
// UPDATE CAPP DATA CACHE commands between MAC1 and DEBIT.
RawPurchase raw_purchase(CpuCard& card, Psam& psam, std::uint32_t amount_fen,
                         bool corrupt_mac1 = false, const std::vector<Command>& capp = {}) {
  RawPurchase r;
  EXPECT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  Command init = init_purchase(amount_fen);
  if (!capp.empty()) init.p1 = 0x03;
  r.init = send(card, init);
  if (!r.init.ok()) return r;
  EXPECT_EQ(send(psam, kSelectPsamDf).sw, sw::kOk);
  const ByteView ir = r.init.data;
  Bytes m;
  put_bytes(m, ir.subspan(11, 4));  // card random
  put_bytes(m, ir.subspan(4, 2));   // offline counter
  put_u32be(m, amount_fen);
  put_u8(m, capp.empty() ? protocol::txn::kPurchase : protocol::txn::kCappPurchase);
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
  for (const Command& c : capp) EXPECT_EQ(send(card, c).sw, sw::kOk) << c.to_string();
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
  EXPECT_EQ(send(card, "805000010B0100000064000102030405").sw, sw::kWrongP1P2)
      << "INITIALIZE FOR LOAD of an ED (passbook) is not modelled";
  EXPECT_EQ(send(card, "805002020B0100000064000102030405").sw, sw::kWrongP1P2);
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
  ASSERT_EQ(log.size(), card.profile().log_records);
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
  EXPECT_EQ(send(card, "00B201F430").sw, sw::kRecordNotFound) << "no travel record yet";
  EXPECT_EQ(send(card, "00B201B417").sw, sw::kFileNotFound) << "SFI 0x16 is no record file";
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
  EXPECT_LE(sizeof(CpuCard), 256u);
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
  protocol::CardImage image = card_image(1, 100'000);
  image.offline_counter = 0xFFFD;  // a card near the end of its life
  CpuCard card(image, sim::Rng(1));
  Psam psam(testing::psam_image());
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  ASSERT_EQ(send(psam, kSelectPsamDf).sw, sw::kOk);
  // Free purchases walk the counter up to FFFF through the real DEBIT path.
  for (int i = 0; i < 2; ++i) ASSERT_EQ(raw_purchase(card, psam, 0).debit.sw, sw::kOk);
  EXPECT_EQ(card.offline_counter(), 0xFFFF);
  EXPECT_EQ(send(card, init_purchase(0)).sw, sw::kCounterLimit);
  EXPECT_EQ(card.balance_fen(), 100'000u);
}

// ---- Load ------------------------------------------------------------------------------------

namespace load {

Command init_load(std::uint32_t amount_fen, std::uint8_t key_index = 1) {
  Bytes d;
  put_u8(d, key_index);
  put_u32be(d, amount_fen);
  put_bytes(d, kTerminal);
  return Command{0x80, 0x50, 0x00, 0x02, d, 0x10};
}

// The host's side: MAC2 under the card's DLK, from the card's INITIALIZE FOR LOAD answer.
protocol::Mac4 host_mac2(const protocol::CardImage& image, const Response& init,
                         std::uint32_t amount_fen, const protocol::DateTime7& dt) {
  const auto sk = crypto::load_session_key(image.algorithm, image.dlk, take<4>(init.data, 8),
                                           get_u16be(init.data, 4));
  return crypto::load_mac2(sk, amount_fen, protocol::txn::kLoadEp, kTerminal, dt);
}

Command credit(const protocol::DateTime7& dt, const protocol::Mac4& mac2) {
  Bytes d;
  put_bytes(d, dt);
  put_bytes(d, mac2);
  return Command{0x80, 0x52, 0x00, 0x00, d, 0x04};
}

}  // namespace load

class CpuCardLoad : public ::testing::TestWithParam<Algorithm> {};

TEST_P(CpuCardLoad, MacsTacLogAndProofMatchAnIndependentComputation) {
  const protocol::CardImage image = card_image(43, 1000, GetParam());
  CpuCard card(image, sim::Rng(8));
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  const Response init = send(card, load::init_load(5000));
  ASSERT_EQ(init.sw, sw::kOk);
  ASSERT_EQ(init.data.size(), 16u);
  EXPECT_EQ(get_u32be(init.data, 0), 1000u);
  EXPECT_EQ(get_u16be(init.data, 4), 0u) << "online counter";
  EXPECT_EQ(init.data[6], 1) << "key version";
  EXPECT_EQ(init.data[7], static_cast<std::uint8_t>(GetParam()));
  const auto seslk = crypto::load_session_key(GetParam(), image.dlk, take<4>(init.data, 8), 0);
  EXPECT_EQ(to_hex(take<4>(init.data, 12)),
            to_hex(crypto::load_mac1(seslk, 1000, 5000, protocol::txn::kLoadEp, kTerminal)));

  const protocol::Mac4 mac2 = load::host_mac2(image, init, 5000, kWhen);
  const Response credit = send(card, load::credit(kWhen, mac2));
  ASSERT_EQ(credit.sw, sw::kOk);
  EXPECT_EQ(to_hex(credit.data),
            to_hex(crypto::load_tac(crypto::tac_key(GetParam(), image.dtk), 6000, 0, 5000,
                                    protocol::txn::kLoadEp, kTerminal, kWhen)));
  EXPECT_EQ(card.balance_fen(), 6000u);
  EXPECT_EQ(card.online_counter(), 1);
  EXPECT_EQ(card.offline_counter(), 0) << "a load does not touch the purchase counter";
  ASSERT_EQ(card.log().size(), 1u);
  EXPECT_EQ(card.log()[0],
            (protocol::LogRecord{0, 0, 5000, protocol::txn::kLoadEp, kTerminal, kWhen}));
  // The proof of a load: the MAC2 the card accepted, then the TAC.
  const Response proof = send(card, "805A0002020001");
  ASSERT_EQ(proof.sw, sw::kOk);
  EXPECT_EQ(to_hex(proof.data), to_hex(mac2) + to_hex(credit.data));
  EXPECT_EQ(send(card, "805A0006020001").sw, sw::kMacError) << "not a purchase";
}

INSTANTIATE_TEST_SUITE_P(Algorithms, CpuCardLoad,
                         ::testing::Values(Algorithm::kTripleDes, Algorithm::kSm4));

TEST(CpuCard, CreditRefusalsChangeNothing) {
  const protocol::CardImage image = card_image(44, 1000);
  CpuCard card(image, sim::Rng(8));
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  EXPECT_EQ(send(card, load::credit(kWhen, {})).sw, sw::kCommandNotAllowed) << "no INITIALIZE";
  Response init = send(card, load::init_load(500));
  protocol::Mac4 mac2 = load::host_mac2(image, init, 500, kWhen);
  mac2[3] ^= 0x80;
  EXPECT_EQ(send(card, load::credit(kWhen, mac2)).sw, sw::kMacInvalid);
  mac2[3] ^= 0x80;
  EXPECT_EQ(send(card, load::credit(kWhen, mac2)).sw, sw::kCommandNotAllowed)
      << "a failed CREDIT ends the session";
  EXPECT_EQ(card.balance_fen(), 1000u);
  EXPECT_EQ(card.online_counter(), 0);
  EXPECT_TRUE(card.log().empty());
  EXPECT_EQ(send(card, load::init_load(500, 2)).sw, sw::kKeyIndexNotSupported);
  EXPECT_EQ(send(card, "8052000004000000000000").sw, sw::kWrongLength);
  // The default profile takes at most 1,000 yuan.
  EXPECT_EQ(send(card, load::init_load(99'001)).sw, sw::kConditionsNotSatisfied);
  EXPECT_EQ(send(card, load::init_load(99'000)).sw, sw::kOk);
}

TEST(CpuCard, ALoadRepaysTheOverdraftFirst) {
  protocol::CardImage image = card_image(45, 100);
  image.overdraft_limit_fen = 500;
  CpuCard card(image, sim::Rng(1));
  Psam psam(testing::psam_image());
  ASSERT_EQ(raw_purchase(card, psam, 300).debit.sw, sw::kOk);
  ASSERT_EQ(card.overdraft_used_fen(), 200u);
  const Response init = send(card, load::init_load(1000));
  ASSERT_EQ(send(card, load::credit(kWhen, load::host_mac2(image, init, 1000, kWhen))).sw, sw::kOk);
  EXPECT_EQ(card.overdraft_used_fen(), 0u);
  EXPECT_EQ(card.balance_fen(), 800u);
}

TEST(CpuCard, AProfileCanRequireThePinForLoads) {
  CardProfile profile = CardProfile::jtt978();
  profile.load_requires_pin = true;
  CpuCard card(card_image(46, 100), sim::Rng(1), profile);
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  EXPECT_EQ(send(card, load::init_load(100)).sw, sw::kSecurityNotSatisfied);
  EXPECT_EQ(send(card, "0020000003123456").sw, sw::kOk);
  EXPECT_EQ(send(card, load::init_load(100)).sw, sw::kOk);
  card.reset();
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  EXPECT_EQ(send(card, load::init_load(100)).sw, sw::kSecurityNotSatisfied) << "reset forgets";
}

// ---- PIN -------------------------------------------------------------------------------------

TEST(CpuCard, VerifyCountsTriesDownAndBlocksAtZero) {
  CpuCard card(card_image(47, 100), sim::Rng(1));
  EXPECT_EQ(send(card, "0020000003123456").sw, sw::kConditionsNotSatisfied) << "not selected";
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  EXPECT_EQ(send(card, "002000000112").sw, sw::kWrongLength);
  EXPECT_EQ(send(card, "0020000103123456").sw, sw::kWrongP1P2);
  EXPECT_EQ(send(card, "0020000003123457").sw, 0x63C2);
  EXPECT_EQ(send(card, "0020000003123457").sw, 0x63C1);
  EXPECT_EQ(send(card, "0020000003123456").sw, sw::kOk);
  EXPECT_EQ(card.pin_tries_left(), 3) << "a right PIN restores the tries";
  EXPECT_EQ(send(card, "00200000021234").sw, 0x63C2) << "a prefix is not the PIN";
  EXPECT_EQ(send(card, "0020000003123457").sw, 0x63C1);
  EXPECT_EQ(send(card, "0020000003123457").sw, 0x63C0);
  EXPECT_EQ(send(card, "0020000003123456").sw, sw::kPinBlocked) << "blocked stays blocked";
}

TEST(CpuCard, ChangePinNeedsTheOldOneAndTakesAWellFormedNewOne) {
  CpuCard card(card_image(48, 100), sim::Rng(1));
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  EXPECT_EQ(send(card, "805E01000612345612345F").sw, sw::kWrongLength) << "no FF separator";
  EXPECT_EQ(send(card, "805E01000512FF12345F").sw, sw::kWrongLength) << "old PIN too short";
  EXPECT_EQ(send(card, "805E000006123456FF1234").sw, sw::kWrongP1P2) << "RELOAD PIN";
  EXPECT_EQ(send(card, "805E010006123456FF12A4").sw, sw::kWrongData) << "A is no digit";
  EXPECT_EQ(send(card, "805E010007999999FF12345F").sw, 0x63C2);
  EXPECT_EQ(send(card, "805E010007123456FF98765F").sw, sw::kOk);
  EXPECT_EQ(send(card, "0020000003123456").sw, 0x63C2) << "the old PIN is gone";
  EXPECT_EQ(send(card, "0020000003987650").sw, 0x63C1) << "F-padding is part of the PIN";
  EXPECT_EQ(send(card, "002000000398765F").sw, sw::kOk);
}

TEST(CpuCard, PullingTheCardDuringVerifyStillCostsTheTry) {
  CpuCard card(card_image(49, 100), sim::Rng(1));
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  // Power fails after the try counter's page write, before the comparison could restore it.
  ASSERT_TRUE(card.arm_power_cut(4));  // journal 1 + flag 1 + purse 1 + clear 1 = 4 pages
  EXPECT_TRUE(card.process(from_hex("0020000003123456")).empty()) << "no answer";
  EXPECT_FALSE(card.powered());
  EXPECT_TRUE(card.process(from_hex("805C000204")).empty()) << "silent until power returns";
  card.reset();
  EXPECT_EQ(card.pin_tries_left(), 2);
}

// ---- Composite purchase ----------------------------------------------------------------------

Command update_capp(std::uint8_t p1, std::uint8_t sfi_, const Bytes& record) {
  return Command{0x80, 0xDC, p1, static_cast<std::uint8_t>(sfi_ << 3), record, std::nullopt};
}

Bytes travel_record(std::uint32_t amount_fen, std::uint32_t balance_after_fen) {
  protocol::TravelRecord t;
  t.terminal = array_from_hex<8>("0000000102030405");
  t.sub_type = 0x01;
  t.station = array_from_hex<7>("00000000710012");
  t.amount_fen = amount_fen;
  t.balance_after_fen = balance_after_fen;
  t.datetime = kWhen;
  t.city = {0x20, 0x00};
  return t.encode();
}

TEST(CpuCard, ACompositePurchaseWritesItsRecordsWithTheDebitInOneTransaction) {
  const protocol::CardImage image = card_image(50, 1000);
  CpuCard card(image, sim::Rng(2));
  Psam psam(testing::psam_image());
  protocol::MetroRecord entry;
  entry.state = protocol::MetroRecord::kEntered;
  entry.entry_station = 0x0215;
  const Bytes travel = travel_record(300, 700);
  const RawPurchase p = raw_purchase(card, psam, 300, false,
                                     {update_capp(0x01, protocol::sfi::kMetro, entry.encode()),
                                      update_capp(0x00, protocol::sfi::kTravel, travel)});
  ASSERT_EQ(p.debit.sw, sw::kOk);
  EXPECT_EQ(p.verify.sw, sw::kOk) << "MAC2 of a type 09 purchase";
  // TAC over type 09.
  const protocol::Mac4 tac =
      crypto::purchase_tac(crypto::tac_key(image.algorithm, image.dtk), 300,
                           protocol::txn::kCappPurchase, kTerminal, p.terminal_seq, kWhen);
  EXPECT_EQ(to_hex(ByteView(p.debit.data.data(), 4)), to_hex(tac));
  EXPECT_EQ(card.log()[0].type, protocol::txn::kCappPurchase);
  EXPECT_EQ(send(card, "00B201F430").data, travel);
  EXPECT_EQ(send(card, "00B201D480").data, entry.encode());
  EXPECT_EQ(send(card, "805A0009020001").sw, sw::kOk) << "proof of a composite purchase";
  EXPECT_EQ(send(card, "805A0006020001").sw, sw::kMacError);
}

TEST(CpuCard, ACachedRecordIsDroppedWhenTheSessionEndsWithoutADebit) {
  CpuCard card(card_image(51, 1000), sim::Rng(2));
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  const std::size_t heap_selected = card.heap_bytes();
  Command init = init_purchase(100);
  init.p1 = 0x03;
  ASSERT_EQ(send(card, init).sw, sw::kOk);
  ASSERT_EQ(send(card, update_capp(0x00, protocol::sfi::kTravel, travel_record(100, 900))).sw,
            sw::kOk);
  EXPECT_EQ(send(card, "805C000204").sw, sw::kOk);
  EXPECT_EQ(send(card, debit(1, kWhen, {})).sw, sw::kCommandNotAllowed);
  EXPECT_EQ(send(card, "00B201F430").sw, sw::kRecordNotFound) << "nothing was written";
  EXPECT_EQ(card.heap_bytes(), heap_selected) << "the cache went with the session";
}

TEST(CpuCard, UpdateCappDataCacheAnswersItsStatusWords) {
  CpuCard card(card_image(52, 1000), sim::Rng(2));
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  const Bytes rec48(48, 0x11);
  EXPECT_EQ(send(card, update_capp(0x00, protocol::sfi::kTravel, rec48)).sw, sw::kCommandNotAllowed)
      << "no composite session";
  auto in_session = [&](const Command& c) {
    Command init = init_purchase(100);
    init.p1 = 0x03;
    EXPECT_EQ(send(card, init).sw, sw::kOk);
    return send(card, c).sw;
  };
  EXPECT_EQ(in_session(update_capp(0x00, protocol::sfi::kTravel, Bytes(47, 0))), sw::kWrongLength);
  EXPECT_EQ(in_session(update_capp(0x01, protocol::sfi::kTravel, rec48)), sw::kWrongP1P2);
  EXPECT_EQ(in_session(update_capp(0x00, protocol::sfi::kLog, Bytes(23, 0))), sw::kFileNotFound);
  EXPECT_EQ(in_session(Command{0x80, 0xDC, 0x00, 0xF4, rec48, {}}), sw::kWrongP1P2);
  EXPECT_EQ(in_session(update_capp(0x02, protocol::sfi::kMetro, Bytes(128, 0))),
            sw::kRecordNotFound)
      << "the default profile has one metro record";
  Command simple = init_purchase(100);
  ASSERT_EQ(send(card, simple).sw, sw::kOk);
  EXPECT_EQ(send(card, update_capp(0x00, protocol::sfi::kTravel, rec48)).sw, sw::kCommandNotAllowed)
      << "a simple purchase has no cache";
}

TEST(CpuCard, TravelRecordsAreACyclicFileNewestFirst) {
  CardProfile profile = CardProfile::jtt978();
  profile.travel_records = 3;
  CpuCard card(card_image(53, 10'000), sim::Rng(2), profile);
  Psam psam(testing::psam_image());
  for (std::uint32_t i = 1; i <= 5; ++i) {
    ASSERT_EQ(raw_purchase(card, psam, i, false,
                           {update_capp(0x00, protocol::sfi::kTravel, travel_record(i, 0))})
                  .debit.sw,
              sw::kOk);
  }
  const auto travel = card.travel_records();
  ASSERT_EQ(travel.size(), 3u);
  for (std::uint8_t rec = 1; rec <= 3; ++rec) {
    const Response r = send(card, Command{0x00, 0xB2, rec, 0xF4, {}, 0x30});
    ASSERT_EQ(r.sw, sw::kOk);
    EXPECT_EQ(r.data, travel[rec - 1u]);
    EXPECT_EQ(protocol::TravelRecord::decode(r.data)->amount_fen, 6u - rec);
  }
  EXPECT_EQ(send(card, "00B204F430").sw, sw::kRecordNotFound);
}

// ---- Blacklist lock --------------------------------------------------------------------------

Command application_block(std::uint8_t p2, const protocol::Mac4& mac) {
  return Command{0x84, 0x1E, 0x00, p2, Bytes(mac.begin(), mac.end()), std::nullopt};
}

TEST(CpuCard, ApplicationBlockNeedsAFreshChallengeAndTheDamkMac) {
  const protocol::CardImage image = card_image(54, 1000);
  CpuCard card(image, sim::Rng(3));
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  EXPECT_EQ(send(card, "0084000008").sw, 0x6C04) << "the challenge is 4 bytes";
  EXPECT_EQ(send(card, "00840000").sw, sw::kWrongLength);
  EXPECT_EQ(send(card, application_block(0x00, {})).sw, sw::kNoChallenge);
  Response challenge = send(card, "0084000004");
  ASSERT_EQ(challenge.sw, sw::kOk);
  protocol::Mac4 mac =
      crypto::application_block_mac(image.algorithm, image.damk, take<4>(challenge.data, 0), 0x00);
  mac[0] ^= 1;
  EXPECT_EQ(send(card, application_block(0x00, mac)).sw, sw::kSmMacWrong);
  mac[0] ^= 1;
  EXPECT_EQ(send(card, application_block(0x00, mac)).sw, sw::kNoChallenge)
      << "a challenge serves one command";
  EXPECT_EQ(card.lock(), CpuCard::Lock::kNone);

  challenge = send(card, "0084000004");
  EXPECT_EQ(send(card, "805C000204").sw, sw::kOk);
  mac = crypto::application_block_mac(image.algorithm, image.damk, take<4>(challenge.data, 0), 0);
  EXPECT_EQ(send(card, application_block(0x00, mac)).sw, sw::kNoChallenge)
      << "any command in between uses the challenge up";

  challenge = send(card, "0084000004");
  mac = crypto::application_block_mac(image.algorithm, image.damk, take<4>(challenge.data, 0), 0);
  EXPECT_EQ(send(card, application_block(0x00, mac)).sw, sw::kOk);
  EXPECT_EQ(card.lock(), CpuCard::Lock::kTemporary);

  card.reset();
  const Response select = send(card, kSelectJtt);
  EXPECT_EQ(select.sw, sw::kBlockedSelected) << "a blocked application still answers its FCI";
  EXPECT_FALSE(select.data.empty());
  EXPECT_EQ(send(card, init_purchase(1)).sw, sw::kConditionsNotSatisfied);
  EXPECT_EQ(send(card, load::init_load(1)).sw, sw::kConditionsNotSatisfied);
  EXPECT_EQ(send(card, "805C000204").sw, sw::kOk) << "the balance can still be read";

  challenge = send(card, "0084000004");
  mac = crypto::application_block_mac(image.algorithm, image.damk, take<4>(challenge.data, 0), 1);
  EXPECT_EQ(send(card, application_block(0x01, mac)).sw, sw::kOk);
  card.reset();
  EXPECT_EQ(send(card, kSelectJtt).sw, sw::kAppBlockedPermanently);
  EXPECT_EQ(send(card, "805C000204").sw, sw::kConditionsNotSatisfied) << "not selected";
}

TEST(CpuCard, ABlockMacMadeWithAnotherCardsKeyIsRefused) {
  const protocol::CardImage image = card_image(55, 1000);
  const protocol::CardImage other = card_image(56, 1000);
  CpuCard card(image, sim::Rng(3));
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  const Response challenge = send(card, "0084000004");
  EXPECT_EQ(send(card, application_block(
                           0x00, crypto::application_block_mac(other.algorithm, other.damk,
                                                               take<4>(challenge.data, 0), 0x00)))
                .sw,
            sw::kSmMacWrong);
}

// ---- Files, validity, families ---------------------------------------------------------------

TEST(CpuCard, HolderFileCarriesTheCardType) {
  protocol::CardImage image = card_image(57, 100);
  image.card_type = protocol::CardType::kStudent;
  CpuCard card(image, sim::Rng(3));
  ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  const Response r = send(card, "00B0960037");
  ASSERT_EQ(r.sw, sw::kOk);
  ASSERT_EQ(r.data.size(), CpuCard::kHolderFileBytes);
  EXPECT_EQ(r.data[0], static_cast<std::uint8_t>(protocol::CardType::kStudent));
  EXPECT_EQ(send(card, "00B0963700").sw, 0x6B00);
}

TEST(CpuCard, AProfileCanMakeTheCardCheckItsValidity) {
  CardProfile profile = CardProfile::jtt978();
  profile.card_checks_validity = true;
  protocol::CardImage image = card_image(58, 1000);
  image.valid_to = protocol::date_bcd(2024, 3, 14);  // the day before kWhen
  CpuCard strict(image, sim::Rng(3), profile);
  CpuCard lenient(image, sim::Rng(3));
  Psam psam(testing::psam_image());
  EXPECT_EQ(raw_purchase(strict, psam, 10).debit.sw, sw::kConditionsNotSatisfied);
  EXPECT_EQ(strict.balance_fen(), 1000u);
  EXPECT_EQ(raw_purchase(lenient, psam, 10).debit.sw, sw::kOk)
      << "by default the terminal checks validity, not the card";
}

TEST(CpuCard, ACjt166CardAnswersItsOwnAid) {
  CpuCard card(testing::cjt166_image(59, 100), sim::Rng(3), CardProfile::cjt166());
  EXPECT_EQ(send(card, kSelectJtt).sw, sw::kFileNotFound);
  EXPECT_EQ(send(card, "00A4040009A00000000386980701").sw, sw::kOk);
  EXPECT_EQ(card.family(), protocol::Family::kCjt166);
}

// ---- Atomicity -------------------------------------------------------------------------------

struct Snapshot {
  std::uint32_t balance;
  std::uint32_t overdraft;
  std::uint16_t offline;
  std::uint16_t online;
  std::vector<protocol::LogRecord> log;
  std::vector<Bytes> travel;
  std::string prove;
  bool operator==(const Snapshot&) const = default;
};

Snapshot snapshot(CpuCard& card, std::string_view prove_apdu) {
  card.reset();
  EXPECT_EQ(send(card, kSelectJtt).sw, sw::kOk);
  const Response proof = send(card, prove_apdu);
  return Snapshot{
      card.balance_fen(), card.overdraft_used_fen(), card.offline_counter(), card.online_counter(),
      card.log(),         card.travel_records(),     to_hex(proof.encode())};
}

// Power lost at each page write of a composite DEBIT: after power returns the card holds
// exactly the old state or exactly the new one, and the switch happens once, at the journal's
// valid flag.
TEST(CpuCard, PowerLostAtAnyPageWriteOfADebitLeavesTheOldOrTheNewState) {
  const protocol::CardImage image = card_image(60, 1000);
  const std::vector<Command> capp = {
      update_capp(0x00, protocol::sfi::kTravel, travel_record(300, 700))};
  Snapshot before, after;
  std::uint64_t full_writes = 0;
  {
    CpuCard card(image, sim::Rng(4));
    Psam psam(testing::psam_image());
    before = snapshot(card, "805A0009020001");
    const std::uint64_t w0 = card.eeprom_page_writes();
    ASSERT_EQ(raw_purchase(card, psam, 300, false, capp).debit.sw, sw::kOk);
    full_writes = card.eeprom_page_writes() - w0;
    after = snapshot(card, "805A0009020001");
  }
  ASSERT_NE(before, after);
  ASSERT_GE(full_writes, 5u);
  int old_states = 0, new_states = 0;
  bool switched = false;
  for (std::uint32_t cut = 0; cut <= full_writes; ++cut) {
    CpuCard card(image, sim::Rng(4));
    Psam psam(testing::psam_image());
    ASSERT_EQ(send(card, kSelectJtt).sw, sw::kOk);
    Command init = init_purchase(300);
    init.p1 = 0x03;
    const Response ir = send(card, init);
    ASSERT_EQ(send(psam, kSelectPsamDf).sw, sw::kOk);
    Bytes m;
    put_bytes(m, ByteView(ir.data).subspan(11, 4));
    put_bytes(m, ByteView(ir.data).subspan(4, 2));
    put_u32be(m, 300);
    put_u8(m, protocol::txn::kCappPurchase);
    put_bytes(m, kWhen);
    put_u8(m, ir.data[9]);
    put_u8(m, ir.data[10]);
    put_bytes(m, card.serial());
    put_bytes(m, Bytes(8, 0));
    const Response mac1 = send(psam, Command{0x80, 0x70, 0x00, 0x00, m, 0x08});
    ASSERT_EQ(send(card, capp[0]).sw, sw::kOk);
    ASSERT_TRUE(card.arm_power_cut(cut));
    const Bytes answer =
        card.process(debit(get_u32be(mac1.data, 0), kWhen, take<4>(mac1.data, 4)).encode());
    EXPECT_TRUE(answer.empty()) << "cut " << cut << ": no answer when power fails";
    const Snapshot s = snapshot(card, "805A0009020001");
    if (s == before) {
      ++old_states;
      EXPECT_FALSE(switched) << "cut " << cut << ": back to the old state after the new";
    } else {
      EXPECT_EQ(s, after) << "cut " << cut << ": a mixed state";
      ++new_states;
      switched = true;
    }
  }
  EXPECT_GT(old_states, 0);
  EXPECT_GT(new_states, 1) << "cuts after the flag, before the last write, roll forward";
}

// ---- Keys from the issuer table --------------------------------------------------------------

TEST(CpuCard, KeysDerivedFromTheIssuerTableBehaveByteForByteLikeStoredKeys) {
  for (Algorithm alg : {Algorithm::kTripleDes, Algorithm::kSm4}) {
    const protocol::CardImage image = card_image(61, 5000, alg);
    const IssuerKeyTable table({testing::issuer_keys()});
    CpuCard stored(image, sim::Rng(9));
    CpuCard derived(image, table, sim::Rng(9), CardProfile::jtt978());
    EXPECT_EQ(derived.heap_bytes(), 0u) << "no keys, no files yet";
    Psam psam_a(testing::psam_image()), psam_b(testing::psam_image());
    const RawPurchase a = raw_purchase(stored, psam_a, 120);
    const RawPurchase b = raw_purchase(derived, psam_b, 120);
    EXPECT_EQ(a.debit.encode(), b.debit.encode());
    EXPECT_EQ(b.verify.sw, sw::kOk);
    const Response ia = send(stored, load::init_load(700));
    const Response ib = send(derived, load::init_load(700));
    EXPECT_EQ(ia.encode(), ib.encode());
    EXPECT_EQ(send(stored, load::credit(kWhen, load::host_mac2(image, ia, 700, kWhen))).encode(),
              send(derived, load::credit(kWhen, load::host_mac2(image, ib, 700, kWhen))).encode());
    const Response ca = send(stored, "0084000004"), cb = send(derived, "0084000004");
    const auto mac = crypto::application_block_mac(alg, image.damk, take<4>(ca.data, 0), 0);
    EXPECT_EQ(send(stored, application_block(0, mac)).sw, sw::kOk);
    EXPECT_EQ(send(derived, application_block(0, mac)).sw, sw::kOk);
    EXPECT_EQ(derived.balance_fen(), stored.balance_fen());
  }
}

TEST(CpuCard, HotStateIsSmallAndFilesComeOnFirstWrite) {
  static_assert(sizeof(CpuCard) <= 128, "fixed state of a card at rest");
  const IssuerKeyTable table({testing::issuer_keys()});
  CpuCard card(card_image(62, 1000), table, sim::Rng(1), CardProfile::jtt978());
  EXPECT_EQ(card.heap_bytes(), 0u) << "no keys, no files, not in a field";
  Psam psam(testing::psam_image());
  ASSERT_EQ(raw_purchase(card, psam, 1).debit.sw, sw::kOk);
  card.reset();  // out of the field: the volatile state goes
  const std::size_t one = card.heap_bytes();
  EXPECT_GT(one, 0u);
  EXPECT_LT(one, 23u) << "one packed log record is smaller than the record";
  ASSERT_EQ(raw_purchase(card, psam, 1, false,
                         {update_capp(0x00, protocol::sfi::kTravel, travel_record(1, 0))})
                .debit.sw,
            sw::kOk);
  card.reset();
  EXPECT_GT(card.heap_bytes(), one);
  EXPECT_LT(card.heap_bytes(), one + 23u + 48u) << "a packed log and travel record";
}

}  // namespace
}  // namespace citycard::devices
