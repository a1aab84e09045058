#include "citycard/devices/purchase.h"

#include <gtest/gtest.h>

#include "citycard/devices/cpu_card.h"
#include "citycard/devices/psam.h"
#include "citycard/protocol/crypto.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

using protocol::Command;
using protocol::Response;
using testing::card_image;
using testing::kTerminal;
namespace crypto = protocol::crypto;
namespace sw = protocol::sw;

const protocol::DateTime7 kWhen = array_from_hex<7>("20240315081530");

// Exchange indexes of a purchase on the card link.
constexpr std::uint64_t kInitExchange = 2;
constexpr std::uint64_t kDebitExchange = 3;

struct Terminal {
  Terminal() : psam(testing::psam_image()), link(psam), sam(link), engine(sam) {}
  Psam psam;
  DirectLink link;
  SamClient sam;
  PurchaseEngine engine;
};

protocol::Mac4 expected_tac(const protocol::CardImage& image, const Purchase& p) {
  return crypto::purchase_tac(crypto::tac_key(image.algorithm, image.dtk), p.amount_fen, p.type,
                              p.terminal, p.terminal_seq, p.datetime);
}

TEST(CardPurchase, APurchaseCarriesWhatClearingNeeds) {
  Terminal t;
  const protocol::CardImage image = card_image(77, 1000);
  CpuCard card(image, sim::Rng(1));
  DirectLink link(card);
  const PurchaseResult r = t.engine.purchase(link, PurchaseRequest{200, kWhen});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_FALSE(r.recovered);
  const Purchase& p = r.purchase;
  EXPECT_EQ(p.card_serial, image.serial);
  EXPECT_EQ(p.card_counter, 0);
  EXPECT_EQ(p.balance_before_fen, 1000u);
  EXPECT_EQ(p.amount_fen, 200u);
  EXPECT_EQ(p.type, protocol::txn::kPurchase);
  EXPECT_EQ(p.terminal, kTerminal);
  EXPECT_EQ(p.terminal_seq, 1u);
  EXPECT_EQ(p.datetime, kWhen);
  EXPECT_EQ(p.key_version, 1);
  EXPECT_EQ(p.algorithm_id, 0);
  EXPECT_EQ(to_hex(p.tac), to_hex(expected_tac(image, p)));
  EXPECT_EQ(card.balance_fen(), 800u);
  EXPECT_EQ(link.exchanges(), 4u) << "SELECT, READ BINARY, INITIALIZE, DEBIT";

  const PurchaseResult second = t.engine.purchase(link, PurchaseRequest{200, kWhen});
  ASSERT_TRUE(second.ok()) << second.detail;
  EXPECT_EQ(second.purchase.card_counter, 1);
  EXPECT_EQ(second.purchase.balance_before_fen, 800u);
  EXPECT_EQ(second.purchase.terminal_seq, 2u);
}

TEST(CardPurchase, RefusalsSayWhy) {
  Terminal t;
  CpuCard poor(card_image(1, 100), sim::Rng(1));
  DirectLink poor_link(poor);
  PurchaseResult r = t.engine.purchase(poor_link, PurchaseRequest{200, kWhen});
  EXPECT_EQ(r.refusal, Refusal::kInsufficientBalance);
  EXPECT_EQ(r.sw, sw::kInsufficientBalance);

  protocol::CardImage other_family = card_image(2, 1000);
  other_family.family = protocol::Family::kCjt166;
  CpuCard cjt(other_family, sim::Rng(1));
  DirectLink cjt_link(cjt);
  r = t.engine.purchase(cjt_link, PurchaseRequest{200, kWhen});
  EXPECT_EQ(r.refusal, Refusal::kCardNotSupported);

  // A card personalised under other issuer keys: the PSAM's MAC1 cannot be right for it.
  protocol::IssuerKeys foreign = testing::issuer_keys();
  foreign.purchase[0] ^= 0xFF;
  CpuCard forged(card_image(3, 1000, crypto::Algorithm::kTripleDes, foreign), sim::Rng(1));
  DirectLink forged_link(forged);
  r = t.engine.purchase(forged_link, PurchaseRequest{200, kWhen});
  EXPECT_EQ(r.refusal, Refusal::kCardError);
  EXPECT_EQ(r.sw, sw::kMacInvalid);
  EXPECT_EQ(forged.balance_fen(), 1000u);
  EXPECT_EQ(t.engine.grey_records(), 0u);
}

// Flips a bit of the MAC2 the card sends back: what a card without the right keys looks like
// to the terminal once the debit itself went through.
class Mac2Corrupter final : public CardLink {
 public:
  explicit Mac2Corrupter(CardLink& inner) : inner_(inner) {}
  Result<Response> transceive(const Command& c) override {
    Result<Response> r = inner_.transceive(c);
    if (r && c.ins == 0x54 && r->data.size() == 8) r->data[7] ^= 0x01;
    return r;
  }

 private:
  CardLink& inner_;
};

TEST(CardPurchase, AMac2ThePsamRejectsIsNoSale) {
  Terminal t;
  CpuCard card(card_image(4, 1000), sim::Rng(1));
  DirectLink direct(card);
  Mac2Corrupter link(direct);
  const PurchaseResult r = t.engine.purchase(link, PurchaseRequest{200, kWhen});
  EXPECT_EQ(r.refusal, Refusal::kMac2Invalid);
  EXPECT_EQ(r.sw, sw::kMacInvalid);
}

// A SAM slot whose module answers every command with one status word.
class DeadSam final : public CardLink {
 public:
  Result<Response> transceive(const Command&) override { return Response::status(0x6A82); }
};

TEST(CardPurchase, ASamThatCannotSignOnRefusesBeforeTouchingTheCard) {
  DeadSam dead;
  SamClient sam(dead);
  PurchaseEngine engine(sam);
  CpuCard card(card_image(5, 1000), sim::Rng(1));
  DirectLink link(card);
  const PurchaseResult r = engine.purchase(link, PurchaseRequest{200, kWhen});
  EXPECT_EQ(r.refusal, Refusal::kSamError);
  EXPECT_NE(r.detail.find("6A82"), std::string::npos) << r.detail;
  EXPECT_EQ(link.exchanges(), 0u);
}

TEST(CardPurchase, TornBeforeDebitLeavesNoGreyRecord) {
  Terminal t;
  CpuCard card(card_image(6, 1000), sim::Rng(1));
  DirectLink direct(card);
  TearingLink link(direct);
  link.tear_at(kInitExchange, TearingLink::When::kAfterCommand);
  const PurchaseResult r = t.engine.purchase(link, PurchaseRequest{200, kWhen});
  EXPECT_EQ(r.refusal, Refusal::kTorn);
  EXPECT_EQ(t.engine.grey_records(), 0u);
  EXPECT_EQ(card.balance_fen(), 1000u);
}

TEST(CardPurchase, ADebitTornAfterTheCardCommittedIsCompletedOnTheNextTapWithoutACharge) {
  Terminal t;
  const protocol::CardImage image = card_image(7, 1000);
  CpuCard card(image, sim::Rng(1));
  {
    DirectLink direct(card);
    TearingLink link(direct);
    link.tear_at(kDebitExchange, TearingLink::When::kAfterCommand);
    const PurchaseResult torn = t.engine.purchase(link, PurchaseRequest{200, kWhen});
    EXPECT_EQ(torn.refusal, Refusal::kTorn);
    EXPECT_EQ(t.engine.grey_records(), 1u);
    EXPECT_EQ(card.balance_fen(), 800u) << "the card did commit";
  }
  card.reset();
  DirectLink again(card);
  const protocol::DateTime7 later = array_from_hex<7>("20240315081545");
  const PurchaseResult r = t.engine.purchase(again, PurchaseRequest{200, later});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_TRUE(r.recovered);
  EXPECT_EQ(card.balance_fen(), 800u) << "no second charge";
  EXPECT_EQ(card.offline_counter(), 1);
  EXPECT_EQ(r.purchase.card_counter, 0);
  EXPECT_EQ(r.purchase.balance_before_fen, 1000u);
  EXPECT_EQ(r.purchase.datetime, kWhen) << "the record is the original purchase";
  EXPECT_EQ(to_hex(r.purchase.tac), to_hex(expected_tac(image, r.purchase)));
  EXPECT_EQ(t.engine.grey_records(), 0u);
  EXPECT_EQ(t.engine.grey_counters().completed, 1u);

  const PurchaseResult next = t.engine.purchase(again, PurchaseRequest{200, later});
  ASSERT_TRUE(next.ok()) << next.detail;
  EXPECT_FALSE(next.recovered);
  EXPECT_EQ(card.balance_fen(), 600u);
}

TEST(CardPurchase, ADebitTornBeforeTheCardSawItIsClearedAndChargedOnce) {
  Terminal t;
  CpuCard card(card_image(8, 1000), sim::Rng(1));
  {
    DirectLink direct(card);
    TearingLink link(direct);
    link.tear_at(kDebitExchange, TearingLink::When::kBeforeCommand);
    EXPECT_EQ(t.engine.purchase(link, PurchaseRequest{200, kWhen}).refusal, Refusal::kTorn);
  }
  EXPECT_EQ(card.balance_fen(), 1000u);
  card.reset();
  DirectLink again(card);
  const PurchaseResult r = t.engine.purchase(again, PurchaseRequest{200, kWhen});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_FALSE(r.recovered);
  EXPECT_EQ(card.balance_fen(), 800u);
  EXPECT_EQ(t.engine.grey_counters().recorded, 1u);
  EXPECT_EQ(t.engine.grey_counters().cleared, 1u);
  EXPECT_EQ(t.engine.grey_records(), 0u);
}

TEST(CardPurchase, GreyRecordsAreBoundedAndEvictionsCounted) {
  Terminal t;
  std::vector<std::unique_ptr<CpuCard>> cards;
  for (std::uint64_t i = 0; i < PurchaseEngine::kGreyRecordsMax + 2; ++i) {
    cards.push_back(std::make_unique<CpuCard>(card_image(100 + i, 1000), sim::Rng(i)));
    DirectLink direct(*cards.back());
    TearingLink link(direct);
    link.tear_at(kDebitExchange, TearingLink::When::kAfterCommand);
    EXPECT_EQ(t.engine.purchase(link, PurchaseRequest{200, kWhen}).refusal, Refusal::kTorn);
  }
  EXPECT_EQ(t.engine.grey_records(), PurchaseEngine::kGreyRecordsMax);
  EXPECT_EQ(t.engine.grey_counters().unresolved, 2u);
  // The oldest was dropped: its card is charged again rather than recovered.
  cards.front()->reset();
  DirectLink oldest(*cards.front());
  const PurchaseResult r = t.engine.purchase(oldest, PurchaseRequest{200, kWhen});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.recovered);
}

}  // namespace
}  // namespace citycard::devices
