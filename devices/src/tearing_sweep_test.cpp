// Every tear point of a purchase, a composite purchase, a load and an M1 debit: the card
// leaves the field before a command, after it (the answer lost), or during it (power lost at
// each of the card's EEPROM page writes, or an M1 block write torn half-way). Then the card
// comes back to the same terminal twice. After each later tap:
//   money on the card + money in the counted records = money before (loads: minus), and
//   no record is counted twice (card, counter) -- and every counted record is genuine (its
//   TAC verifies under the card's keys).
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "citycard/devices/card_link.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/load.h"
#include "citycard/devices/m1_purse.h"
#include "citycard/devices/psam.h"
#include "citycard/devices/purchase.h"
#include "citycard/protocol/capp.h"
#include "citycard/protocol/crypto.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

namespace crypto = protocol::crypto;
namespace m1 = protocol::m1;
using testing::card_image;
using When = TearingLink::When;

const protocol::DateTime7 kWhen = array_from_hex<7>("20240315081530");
constexpr std::uint32_t kBalanceFen = 1000;
constexpr std::uint32_t kAmountFen = 130;
// More than any command of these transactions writes (a composite DEBIT: about 7 pages).
constexpr std::uint32_t kPageWritesMax = 10;

struct TearPoint {
  std::uint64_t exchange;
  When when;
  std::uint32_t page_writes;
  std::string name() const {
    const char* w = when == When::kBeforeCommand  ? "before"
                    : when == When::kAfterCommand ? "after"
                                                  : "during";
    return "exchange " + std::to_string(exchange) + " " + w + " (pages " +
           std::to_string(page_writes) + ")";
  }
};

std::vector<TearPoint> tear_points(std::uint64_t exchanges) {
  std::vector<TearPoint> out;
  for (std::uint64_t k = 0; k < exchanges; ++k) {
    out.push_back({k, When::kBeforeCommand, 0});
    out.push_back({k, When::kAfterCommand, 0});
    for (std::uint32_t p = 0; p <= kPageWritesMax; ++p) out.push_back({k, When::kDuringCommand, p});
  }
  return out;
}

// ---- CPU purchases ---------------------------------------------------------------------------

struct PurchaseLedger {
  std::vector<Purchase> records;
  std::set<std::pair<std::string, std::uint16_t>> seen;
  void count(const Purchase& p, const protocol::CardImage& image, const std::string& where) {
    EXPECT_TRUE(seen.insert({to_hex(p.card_serial), p.card_counter}).second)
        << where << ": counter " << p.card_counter << " counted twice";
    EXPECT_EQ(to_hex(p.tac),
              to_hex(crypto::purchase_tac(crypto::tac_key(image.algorithm, image.dtk), p.amount_fen,
                                          p.type, p.terminal, p.terminal_seq, p.datetime)))
        << where << ": a record whose TAC does not verify";
    records.push_back(p);
  }
  std::uint64_t total_fen() const {
    std::uint64_t t = 0;
    for (const auto& p : records) t += p.amount_fen;
    return t;
  }
};

PurchaseRequest request(bool composite) {
  PurchaseRequest r{kAmountFen, kWhen};
  if (composite) {
    protocol::TravelRecord t;
    t.amount_fen = kAmountFen;
    t.datetime = kWhen;
    r.capp_updates.push_back(CappUpdate{protocol::sfi::kTravel, 0x00, t.encode()});
  }
  return r;
}

std::uint64_t clean_exchanges(bool composite) {
  CpuCard card(card_image(1, kBalanceFen), sim::Rng(1));
  Psam psam(testing::psam_image());
  DirectLink sam_link(psam);
  SamClient sam(sam_link);
  PurchaseEngine engine(sam);
  DirectLink link(card);
  EXPECT_TRUE(engine.purchase(link, request(composite)).ok());
  return link.exchanges();
}

void sweep_purchases(bool composite) {
  const std::uint64_t exchanges = clean_exchanges(composite);
  ASSERT_EQ(exchanges, composite ? 5u : 4u);
  int recovered = 0, torn = 0;
  for (const TearPoint& tp : tear_points(exchanges)) {
    const protocol::CardImage image = card_image(7, kBalanceFen);
    CpuCard card(image, sim::Rng(3));
    Psam psam(testing::psam_image());
    DirectLink sam_link(psam);
    SamClient sam(sam_link);
    PurchaseEngine engine(sam);
    PurchaseLedger ledger;
    {
      DirectLink direct(card);
      TearingLink link(direct);
      link.tear_at(tp.exchange, tp.when, tp.page_writes);
      const PurchaseResult r = engine.purchase(link, request(composite));
      if (r.ok()) ledger.count(r.purchase, image, tp.name());
      if (r.refusal == Refusal::kTorn) ++torn;
    }
    for (int tap = 1; tap <= 2; ++tap) {
      card.reset();
      DirectLink link(card);
      const PurchaseResult r = engine.purchase(link, request(composite));
      ASSERT_TRUE(r.ok()) << tp.name() << ", tap " << tap << ": " << r.detail;
      if (r.recovered) ++recovered;
      ledger.count(r.purchase, image, tp.name());
      EXPECT_EQ(card.balance_fen() + ledger.total_fen(), kBalanceFen)
          << tp.name() << ", tap " << tap << ": money appeared or vanished";
    }
    EXPECT_EQ(engine.grey_records(), 0u) << tp.name();
  }
  EXPECT_GT(torn, 0);
  EXPECT_GT(recovered, 0) << "some tears are recovered from the card's proof";
}

TEST(TearingSweep, EveryTearPointOfAPurchaseConservesMoney) {
  sweep_purchases(false);
}

TEST(TearingSweep, EveryTearPointOfACompositePurchaseConservesMoney) {
  sweep_purchases(true);
}

// ---- CPU load --------------------------------------------------------------------------------

TEST(TearingSweep, EveryTearPointOfALoadConservesMoney) {
  const IssuerKeyTable table({testing::issuer_keys()});
  std::uint64_t exchanges = 0;
  {
    KeyedLoadHost host(table);
    LoadEngine engine(testing::kTerminal, host);
    CpuCard card(card_image(1, kBalanceFen), sim::Rng(1));
    DirectLink link(card);
    ASSERT_TRUE(engine.load(link, LoadRequest{kAmountFen, kWhen, std::nullopt}).ok());
    exchanges = link.exchanges();
  }
  ASSERT_EQ(exchanges, 4u);
  int recovered = 0;
  for (const TearPoint& tp : tear_points(exchanges)) {
    const protocol::CardImage image = card_image(8, kBalanceFen);
    CpuCard card(image, sim::Rng(4));
    KeyedLoadHost host(table);
    LoadEngine engine(testing::kTerminal, host);
    std::uint64_t loaded_fen = 0;
    std::set<std::uint16_t> counters;
    auto count = [&](const LoadResult& r) {
      EXPECT_TRUE(counters.insert(r.load.online_counter).second)
          << tp.name() << ": load " << r.load.online_counter << " counted twice";
      EXPECT_EQ(to_hex(r.load.tac),
                to_hex(crypto::load_tac(crypto::tac_key(image.algorithm, image.dtk),
                                        r.load.balance_before_fen + r.load.amount_fen,
                                        r.load.online_counter, r.load.amount_fen,
                                        protocol::txn::kLoadEp, r.load.terminal, r.load.datetime)))
          << tp.name();
      loaded_fen += r.load.amount_fen;
    };
    {
      DirectLink direct(card);
      TearingLink link(direct);
      link.tear_at(tp.exchange, tp.when, tp.page_writes);
      const LoadResult r = engine.load(link, LoadRequest{kAmountFen, kWhen, std::nullopt});
      if (r.ok()) count(r);
    }
    for (int tap = 1; tap <= 2; ++tap) {
      card.reset();
      DirectLink link(card);
      const LoadResult r = engine.load(link, LoadRequest{kAmountFen, kWhen, std::nullopt});
      ASSERT_TRUE(r.ok()) << tp.name() << ", tap " << tap << ": " << r.detail;
      if (r.recovered) ++recovered;
      count(r);
      EXPECT_EQ(card.balance_fen(), kBalanceFen + loaded_fen)
          << tp.name() << ", tap " << tap << ": money appeared or vanished";
    }
    // Every authorisation the host gave either reached the card (counted) or is owed back.
    EXPECT_EQ(host.approvals(), counters.size() + engine.grey_counters().cleared) << tp.name();
  }
  EXPECT_GT(recovered, 0);
}

// ---- M1 debit --------------------------------------------------------------------------------

M1PurseOptions m1_options() {
  M1PurseOptions o;
  o.terminal = testing::kTerminal;
  o.m1_master = testing::issuer_keys().m1;
  return o;
}

TEST(TearingSweep, EveryTearPointOfAnM1DebitConservesMoneyAndLeavesARecoverableCard) {
  constexpr std::uint32_t kUid = 0x5A5A0001;
  std::uint64_t exchanges = 0;
  {
    M1Card card(testing::m1_image(kUid, kBalanceFen));
    DirectM1Link link(card);
    M1PurseEngine engine(m1_options());
    ASSERT_TRUE(engine.transact(link, M1Request{kAmountFen, kWhen}).ok());
    exchanges = link.exchanges();
  }
  ASSERT_GE(exchanges, 20u);
  int forward = 0, back = 0, points = 0;
  for (std::uint64_t k = 0; k < exchanges; ++k) {
    for (When when : {When::kBeforeCommand, When::kAfterCommand, When::kDuringCommand}) {
      const std::string where = TearPoint{k, when, 0}.name();
      ++points;
      M1Card card(testing::m1_image(kUid, kBalanceFen));
      M1PurseEngine engine(m1_options());
      std::uint64_t debited_fen = 0;
      std::set<std::uint16_t> counters;
      auto count = [&](const M1Result& r) {
        EXPECT_TRUE(counters.insert(r.txn.counter).second)
            << where << ": transaction " << r.txn.counter << " counted twice";
        debited_fen += r.txn.amount_fen;
      };
      {
        DirectM1Link direct(card);
        TearingM1Link link(direct);
        link.tear_at(k, when);
        const M1Result r = engine.transact(link, M1Request{kAmountFen, kWhen});
        if (r.ok()) count(r);
      }
      for (int tap = 1; tap <= 2; ++tap) {
        card.reset();
        DirectM1Link link(card);
        const M1Result r = engine.transact(link, M1Request{kAmountFen, kWhen});
        ASSERT_TRUE(r.ok()) << where << ", tap " << tap << ": " << r.detail;
        count(r);
        const auto purse = m1::decode_value(card.block(8));
        const auto backup = m1::decode_value(card.block(9));
        ASSERT_TRUE(purse && backup) << where;
        EXPECT_EQ(purse->value, backup->value) << where;
        EXPECT_EQ(static_cast<std::uint64_t>(purse->value) + debited_fen, kBalanceFen)
            << where << ", tap " << tap << ": money appeared or vanished";
        EXPECT_EQ(card.block(24), card.block(25)) << where;
      }
      forward += engine.counters().rolled_forward > 0;
      back += engine.counters().rolled_back > 0;
    }
  }
  EXPECT_GT(forward, 0) << "some tears are rolled forward";
  EXPECT_GT(back, 0) << "some tears are rolled back";
  EXPECT_EQ(points, static_cast<int>(3 * exchanges));
}

// ---- Random tearing over many taps -----------------------------------------------------------

TEST(TearingSoak, RandomTearsOverManyTapsConserveMoneyAcrossCards) {
  constexpr int kCards = 12;
  constexpr int kTaps = 600;
  const TearingOptions knobs{.tear_probability = 0.25,
                             .tear_after_command_probability = 0.4,
                             .tear_during_command_probability = 0.3};
  sim::Rng rng(20240315);
  std::vector<protocol::CardImage> images;
  std::vector<std::unique_ptr<CpuCard>> cards;
  for (int i = 0; i < kCards; ++i) {
    images.push_back(card_image(1000 + i, 100'000));
    cards.push_back(
        std::make_unique<CpuCard>(images.back(), rng.fork("card-" + std::to_string(i))));
  }
  Psam psam(testing::psam_image());
  DirectLink sam_link(psam);
  SamClient sam(sam_link);
  PurchaseEngine engine(sam);
  PurchaseLedger ledger;
  sim::Rng plan = rng.fork("tear-plan");
  int tears = 0;
  for (int t = 0; t < kTaps; ++t) {
    const auto i = static_cast<std::size_t>(plan.uniform(kCards));
    cards[i]->reset();
    DirectLink direct(*cards[i]);
    RandomTearingLink link(direct, knobs, plan.fork("tap-" + std::to_string(t)));
    const PurchaseResult r = engine.purchase(link, request(t % 3 == 0));
    if (r.ok()) ledger.count(r.purchase, images[i], "tap " + std::to_string(t));
    tears += link.torn();
  }
  // One clean tap per card resolves whatever is still grey.
  for (int i = 0; i < kCards; ++i) {
    cards[static_cast<std::size_t>(i)]->reset();
    DirectLink link(*cards[static_cast<std::size_t>(i)]);
    const PurchaseResult r = engine.purchase(link, request(false));
    ASSERT_TRUE(r.ok()) << r.detail;
    ledger.count(r.purchase, images[static_cast<std::size_t>(i)], "final");
  }
  std::uint64_t on_cards = 0;
  for (const auto& c : cards) on_cards += c->balance_fen();
  EXPECT_EQ(on_cards + ledger.total_fen(), std::uint64_t{kCards} * 100'000)
      << "seed 20240315, tear_probability " << knobs.tear_probability;
  EXPECT_GT(tears, kTaps / 10) << "the knob tears";
  EXPECT_GT(engine.grey_counters().completed, 0u);
  EXPECT_EQ(engine.grey_records(), 0u);
}

}  // namespace
}  // namespace citycard::devices
