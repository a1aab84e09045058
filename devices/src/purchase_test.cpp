#include "citycard/devices/purchase.h"

#include <gtest/gtest.h>

#include "citycard/devices/cpu_card.h"
#include "citycard/devices/psam.h"
#include "citycard/protocol/capp.h"
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
  explicit Terminal(PurchaseOptions options = {})
      : psam(testing::psam_image()), link(psam), sam(link), engine(sam, options) {}
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

  PurchaseOptions jtt_only;
  jtt_only.accept_cjt166 = false;
  Terminal jtt_terminal(jtt_only);
  protocol::CardImage other_family = card_image(2, 1000);
  other_family.family = protocol::Family::kCjt166;
  CpuCard cjt(other_family, sim::Rng(1));
  DirectLink cjt_link(cjt);
  r = jtt_terminal.engine.purchase(cjt_link, PurchaseRequest{200, kWhen});
  EXPECT_EQ(r.refusal, Refusal::kCardNotSupported);
  EXPECT_EQ(cjt.balance_fen(), 1000u);

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

// ---- Composite purchases ---------------------------------------------------------------------

Bytes bus_travel_record() {
  protocol::TravelRecord t;
  t.sub_type = 0x01;
  t.amount_fen = 200;
  t.balance_after_fen = 800;
  t.datetime = kWhen;
  return t.encode();
}

TEST(CardPurchase, ABusCompositePurchaseWritesTheTravelRecordWithTheDebit) {
  Terminal t;
  const protocol::CardImage image = card_image(80, 1000);
  CpuCard card(image, sim::Rng(1));
  std::vector<std::string> apdus;
  DirectLink link(card, [&](const Command& c, const Response&) {
    apdus.push_back(c.to_string().substr(0, 8));
  });
  PurchaseRequest request{200, kWhen};
  request.capp_updates.push_back(CappUpdate{protocol::sfi::kTravel, 0x00, bus_travel_record()});
  const PurchaseResult r = t.engine.purchase(link, request);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.purchase.type, protocol::txn::kCappPurchase);
  EXPECT_EQ(to_hex(r.purchase.tac), to_hex(expected_tac(image, r.purchase)));
  EXPECT_EQ(apdus,
            (std::vector<std::string>{"00A40400", "00B09500", "80500302", "80DC00F0", "80540100"}));
  ASSERT_EQ(card.travel_records().size(), 1u);
  EXPECT_EQ(card.travel_records()[0], bus_travel_record());
  EXPECT_EQ(card.balance_fen(), 800u);
}

TEST(CardPurchase, AMetroExitWritesTheMetroRecordThenTheTravelRecord) {
  Terminal t;
  CpuCard card(card_image(81, 1000), sim::Rng(1));
  DirectLink link(card);
  protocol::MetroRecord exit;
  exit.state = protocol::MetroRecord::kExited;
  exit.exit_station = 0x0301;
  exit.fare_fen = 400;
  PurchaseRequest request{400, kWhen};
  request.capp_updates = {CappUpdate{protocol::sfi::kMetro, 0x01, exit.encode()},
                          CappUpdate{protocol::sfi::kTravel, 0x00, bus_travel_record()}};
  const PurchaseResult r = t.engine.purchase(link, request);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(protocol::MetroRecord::decode(card.metro_record(1)), exit);
  EXPECT_EQ(card.travel_records().size(), 1u);
}

TEST(CardPurchase, ARejectedCappRecordIsNoSaleAndNoDebit) {
  Terminal t;
  CpuCard card(card_image(82, 1000), sim::Rng(1));
  DirectLink link(card);
  PurchaseRequest request{200, kWhen};
  request.capp_updates.push_back(CappUpdate{protocol::sfi::kTravel, 0x00, Bytes(47, 0)});
  const PurchaseResult r = t.engine.purchase(link, request);
  EXPECT_EQ(r.refusal, Refusal::kCardError);
  EXPECT_EQ(r.sw, sw::kWrongLength);
  EXPECT_EQ(card.balance_fen(), 1000u);
  EXPECT_EQ(t.engine.grey_records(), 0u);
}

TEST(CardPurchase, ATornCompositeDebitIsRecoveredWithItsOwnProofType) {
  Terminal t;
  const protocol::CardImage image = card_image(83, 1000);
  CpuCard card(image, sim::Rng(1));
  PurchaseRequest request{200, kWhen};
  request.capp_updates.push_back(CappUpdate{protocol::sfi::kTravel, 0x00, bus_travel_record()});
  {
    DirectLink direct(card);
    TearingLink link(direct);
    link.tear_at(4, TearingLink::When::kAfterCommand);  // SELECT, READ, INIT, 80DC, DEBIT
    EXPECT_EQ(t.engine.purchase(link, request).refusal, Refusal::kTorn);
  }
  card.reset();
  DirectLink again(card);
  const PurchaseResult r = t.engine.purchase(again, request);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_TRUE(r.recovered);
  EXPECT_EQ(r.purchase.type, protocol::txn::kCappPurchase);
  EXPECT_EQ(to_hex(r.purchase.tac), to_hex(expected_tac(image, r.purchase)));
  EXPECT_EQ(card.balance_fen(), 800u);
}

// ---- Families, validity, blacklist, duration -------------------------------------------------

TEST(CardPurchase, ACjt166CardIsServedUnderThePsamsCjt166DfWithCityCodeDiversification) {
  Terminal t;
  std::vector<std::string> sam_apdus;
  t.link.set_trace(
      [&](const Command& c, const Response&, std::int64_t) { sam_apdus.push_back(c.to_string()); });
  const protocol::CardImage image = testing::cjt166_image(84, 1000);
  CpuCard cjt(image, sim::Rng(1), CardProfile::cjt166());
  DirectLink link(cjt);
  const PurchaseResult r = t.engine.purchase(link, PurchaseRequest{150, kWhen});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(to_hex(r.purchase.tac), to_hex(expected_tac(image, r.purchase)));
  EXPECT_EQ(cjt.balance_fen(), 850u);
  ASSERT_GE(sam_apdus.size(), 3u);
  EXPECT_EQ(sam_apdus[sam_apdus.size() - 3], "00A40000021001");
  const std::string mac1 = sam_apdus[sam_apdus.size() - 2];
  EXPECT_EQ(mac1.substr(mac1.size() - 18, 16), "2000ff0000000000")
      << "city code | FF 00..: " << mac1;

  CpuCard jtt(card_image(85, 1000), sim::Rng(1));
  DirectLink jtt_link(jtt);
  ASSERT_TRUE(t.engine.purchase(jtt_link, PurchaseRequest{150, kWhen}).ok());
  EXPECT_EQ(sam_apdus[sam_apdus.size() - 3], "00A40000028011") << "back to JT/T 978's DF";
}

TEST(CardPurchase, ACardOutsideItsValidityIsRefusedBeforeInitialize) {
  Terminal t;
  protocol::CardImage expired = card_image(86, 1000);
  expired.valid_to = protocol::date_bcd(2024, 3, 14);
  CpuCard card(expired, sim::Rng(1));
  DirectLink link(card);
  PurchaseResult r = t.engine.purchase(link, PurchaseRequest{200, kWhen});
  EXPECT_EQ(r.refusal, Refusal::kCardExpired);
  EXPECT_EQ(link.exchanges(), 2u) << "SELECT and READ BINARY only";
  protocol::CardImage future = card_image(87, 1000);
  future.valid_from = protocol::date_bcd(2024, 3, 16);
  CpuCard later(future, sim::Rng(1));
  DirectLink later_link(later);
  EXPECT_EQ(t.engine.purchase(later_link, PurchaseRequest{200, kWhen}).refusal,
            Refusal::kCardExpired);
  protocol::CardImage last_day = card_image(88, 1000);
  last_day.valid_to = protocol::date_bcd(2024, 3, 15);
  CpuCard today(last_day, sim::Rng(1));
  DirectLink today_link(today);
  EXPECT_TRUE(t.engine.purchase(today_link, PurchaseRequest{200, kWhen}).ok());
}

TEST(CardPurchase, ABlacklistedCardIsLockedWithThePsamsMacAndRefusedFromThenOn) {
  for (bool permanent : {false, true}) {
    PurchaseOptions options;
    options.blacklist_lock_permanent = permanent;
    Terminal t(options);
    const protocol::CardImage image = card_image(89, 1000);
    t.engine.set_blacklist([&](const protocol::Serial8& s) { return s == image.serial; });
    CpuCard card(image, sim::Rng(1));
    DirectLink link(card);
    const PurchaseResult r = t.engine.purchase(link, PurchaseRequest{200, kWhen});
    EXPECT_EQ(r.refusal, Refusal::kBlacklisted) << r.detail;
    EXPECT_EQ(card.lock(), permanent ? CpuCard::Lock::kPermanent : CpuCard::Lock::kTemporary);
    EXPECT_EQ(card.balance_fen(), 1000u);
    card.reset();
    t.engine.set_blacklist({});
    DirectLink again(card);
    const PurchaseResult blocked = t.engine.purchase(again, PurchaseRequest{200, kWhen});
    EXPECT_EQ(blocked.refusal, Refusal::kCardBlocked);
    EXPECT_EQ(blocked.sw, permanent ? sw::kAppBlockedPermanently : sw::kBlockedSelected);
  }
}

TEST(CardPurchase, ALockWithoutTheMaintenanceKeyFails) {
  protocol::PsamImage image = testing::psam_image();
  image.maintenance_master[0] ^= 0x55;  // a PSAM with another issuer's MAMK
  Psam psam(image);
  DirectLink sam_link(psam);
  SamClient sam(sam_link);
  PurchaseEngine engine(sam);
  const protocol::CardImage card_img = card_image(90, 1000);
  engine.set_blacklist([](const protocol::Serial8&) { return true; });
  CpuCard card(card_img, sim::Rng(1));
  DirectLink link(card);
  const PurchaseResult r = engine.purchase(link, PurchaseRequest{200, kWhen});
  EXPECT_EQ(r.refusal, Refusal::kCardError);
  EXPECT_EQ(r.sw, sw::kSmMacWrong);
  EXPECT_EQ(card.lock(), CpuCard::Lock::kNone);
}

TEST(CardPurchase, EveryTapReportsItsCardAndPsamTime) {
  Terminal t;
  CpuCard card(card_image(91, 1000), sim::Rng(1));
  DirectLink link(card);
  const std::int64_t sam_before = t.link.elapsed_us();
  const PurchaseResult r = t.engine.purchase(link, PurchaseRequest{200, kWhen});
  ASSERT_TRUE(r.ok());
  EXPECT_GT(link.elapsed_us(), 0);
  EXPECT_GT(t.link.elapsed_us(), sam_before);
  EXPECT_EQ(r.duration_us, link.elapsed_us() + t.link.elapsed_us() - sam_before);
}

}  // namespace
}  // namespace citycard::devices
