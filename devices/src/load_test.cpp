#include "citycard/devices/load.h"

#include <gtest/gtest.h>

#include "citycard/devices/cpu_card.h"
#include "citycard/protocol/crypto.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

using testing::card_image;
using testing::kTerminal;
namespace crypto = protocol::crypto;
namespace sw = protocol::sw;

const protocol::DateTime7 kWhen = array_from_hex<7>("20240315081530");
constexpr std::uint64_t kCreditExchange = 3;  // SELECT, READ BINARY, INITIALIZE, CREDIT

struct Desk {
  Desk() : table({testing::issuer_keys()}), host(table), engine(kTerminal, host) {}
  IssuerKeyTable table;
  KeyedLoadHost host;
  LoadEngine engine;
};

protocol::Mac4 expected_tac(const protocol::CardImage& image, const Load& l) {
  return crypto::load_tac(crypto::tac_key(image.algorithm, image.dtk),
                          l.balance_before_fen + l.amount_fen, l.online_counter, l.amount_fen,
                          protocol::txn::kLoadEp, l.terminal, l.datetime);
}

TEST(CardLoad, ALoadCreditsTheCardWithATacTheBackendCanCheck) {
  Desk d;
  const protocol::CardImage image = card_image(100, 250);
  CpuCard card(image, sim::Rng(1));
  DirectLink link(card);
  const LoadResult r = d.engine.load(link, LoadRequest{5000, kWhen, std::nullopt});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_FALSE(r.recovered);
  EXPECT_EQ(card.balance_fen(), 5250u);
  EXPECT_EQ(r.load.balance_before_fen, 250u);
  EXPECT_EQ(r.load.online_counter, 0);
  EXPECT_EQ(r.load.card_serial, image.serial);
  EXPECT_EQ(to_hex(r.load.tac), to_hex(expected_tac(image, r.load)));
  EXPECT_EQ(d.host.approvals(), 1u);
  EXPECT_EQ(r.duration_us, link.elapsed_us() + KeyedLoadHost::Options{}.host_latency_us);

  const LoadResult second = d.engine.load(link, LoadRequest{100, kWhen, std::nullopt});
  ASSERT_TRUE(second.ok()) << second.detail;
  EXPECT_EQ(second.load.online_counter, 1);
}

TEST(CardLoad, TheHostRefusesAMac1ItCannotVerify) {
  Desk d;
  protocol::IssuerKeys foreign = testing::issuer_keys();
  foreign.load[5] ^= 0x02;  // not bit 0: DES ignores parity bits
  CpuCard card(card_image(101, 250, crypto::Algorithm::kTripleDes, foreign), sim::Rng(1));
  DirectLink link(card);
  const LoadResult r = d.engine.load(link, LoadRequest{5000, kWhen, std::nullopt});
  EXPECT_EQ(r.refusal, Refusal::kHostRefused);
  EXPECT_NE(r.detail.find("bad_mac"), std::string::npos) << r.detail;
  EXPECT_EQ(card.balance_fen(), 250u);
  EXPECT_EQ(d.host.approvals(), 0u);
}

TEST(CardLoad, APinIsVerifiedBeforeTheLoad) {
  Desk d;
  CpuCard card(card_image(102, 0), sim::Rng(1));
  DirectLink link(card);
  LoadResult r = d.engine.load(link, LoadRequest{100, kWhen, std::string("654321")});
  EXPECT_EQ(r.refusal, Refusal::kCardError);
  EXPECT_EQ(r.sw, 0x63C2);
  r = d.engine.load(link, LoadRequest{100, kWhen, std::string("123456")});
  EXPECT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(card.balance_fen(), 100u);
}

TEST(CardLoad, ACreditTornAfterTheCardCommittedIsCompletedOnTheNextTapWithoutACredit) {
  Desk d;
  const protocol::CardImage image = card_image(103, 250);
  CpuCard card(image, sim::Rng(1));
  {
    DirectLink direct(card);
    TearingLink link(direct);
    link.tear_at(kCreditExchange, TearingLink::When::kAfterCommand);
    EXPECT_EQ(d.engine.load(link, LoadRequest{5000, kWhen, std::nullopt}).refusal, Refusal::kTorn);
  }
  EXPECT_EQ(card.balance_fen(), 5250u);
  EXPECT_EQ(d.engine.grey_loads(), 1u);
  card.reset();
  DirectLink again(card);
  const LoadResult r = d.engine.load(again, LoadRequest{5000, kWhen, std::nullopt});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_TRUE(r.recovered);
  EXPECT_EQ(card.balance_fen(), 5250u) << "no second credit";
  EXPECT_EQ(to_hex(r.load.tac), to_hex(expected_tac(image, r.load)));
  EXPECT_EQ(d.engine.grey_counters().completed, 1u);
  EXPECT_EQ(d.host.approvals(), 1u);
}

TEST(CardLoad, ACreditTornBeforeTheCardSawItIsClearedAndLoadedOnce) {
  Desk d;
  CpuCard card(card_image(104, 250), sim::Rng(1));
  {
    DirectLink direct(card);
    TearingLink link(direct);
    link.tear_at(kCreditExchange, TearingLink::When::kBeforeCommand);
    EXPECT_EQ(d.engine.load(link, LoadRequest{5000, kWhen, std::nullopt}).refusal, Refusal::kTorn);
  }
  card.reset();
  DirectLink again(card);
  const LoadResult r = d.engine.load(again, LoadRequest{5000, kWhen, std::nullopt});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_FALSE(r.recovered);
  EXPECT_EQ(card.balance_fen(), 5250u);
  EXPECT_EQ(d.engine.grey_counters().cleared, 1u) << "the host must reverse the first";
}

// The load's GET TRANSACTION PROVE type is an unconfirmed option: a terminal and a card that
// read it differently cannot complete a torn load, and the terminal says so.
TEST(CardLoad, ATerminalWithAnotherProveTypeCannotCompleteATornLoad) {
  IssuerKeyTable table({testing::issuer_keys()});
  KeyedLoadHost host(table);
  LoadOptions options;
  options.prove_type = 0x03;
  LoadEngine engine(kTerminal, host, options);
  CpuCard card(card_image(105, 250), sim::Rng(1));
  {
    DirectLink direct(card);
    TearingLink link(direct);
    link.tear_at(kCreditExchange, TearingLink::When::kAfterCommand);
    EXPECT_EQ(engine.load(link, LoadRequest{5000, kWhen, std::nullopt}).refusal, Refusal::kTorn);
  }
  card.reset();
  DirectLink again(card);
  const LoadResult r = engine.load(again, LoadRequest{100, kWhen, std::nullopt});
  EXPECT_FALSE(r.recovered);
  EXPECT_EQ(engine.grey_counters().unresolved, 1u);
}

}  // namespace
}  // namespace citycard::devices
