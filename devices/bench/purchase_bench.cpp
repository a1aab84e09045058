// Whole transactions on in-process links, card and PSAM, all APDUs (encoded, parsed) and all
// crypto: CPU time per transaction and APDU exchanges per second. The goal for a purchase is
// at most 5 us of CPU, so that a city's rush hour replays many times faster than real time.
#include <benchmark/benchmark.h>

#include <memory>
#include <optional>
#include <vector>

#include "../src/test_support.h"
#include "citycard/devices/card_keys.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/load.h"
#include "citycard/devices/m1_purse.h"
#include "citycard/devices/psam.h"
#include "citycard/devices/purchase.h"
#include "citycard/protocol/capp.h"
#include "citycard/protocol/crypto_evp.h"

namespace citycard::devices::bench {
namespace {

const protocol::DateTime7 kWhen = array_from_hex<7>("20240315081530");
// A card's offline counter stops at FFFF; benchmarks replace the card before that.
constexpr std::uint16_t kPurchasesPerCard = 60'000;
constexpr double kApdusPerPurchase = 6;  // card 4 (SELECT, READ, INIT, DEBIT), PSAM 2

struct Terminal {
  Terminal() : psam(testing::psam_image()), link(psam), sam(link), engine(sam) {
    (void)engine.open();
  }
  Psam psam;
  DirectLink link;
  SamClient sam;
  PurchaseEngine engine;
};

enum class Keys { kStored, kTable };

void run_purchases(benchmark::State& state, Keys keys, bool composite) {
  Terminal t;
  const IssuerKeyTable table({testing::issuer_keys()});
  const protocol::CardImage image = testing::card_image(1, 100'000);
  auto make_card = [&] {
    return keys == Keys::kStored
               ? std::make_unique<CpuCard>(image, sim::Rng(1))
               : std::make_unique<CpuCard>(image, table, sim::Rng(1), CardProfile::jtt978());
  };
  std::unique_ptr<CpuCard> card = make_card();
  PurchaseRequest request{0, kWhen};
  if (composite) {
    request.capp_updates.push_back(
        CappUpdate{protocol::sfi::kTravel, 0x00, protocol::TravelRecord{}.encode()});
  }
  std::int64_t purchases = 0;
  for (auto _ : state) {
    if (card->offline_counter() >= kPurchasesPerCard) {
      state.PauseTiming();
      card = make_card();
      state.ResumeTiming();
    }
    card->reset();
    DirectLink link(*card);
    const PurchaseResult r = t.engine.purchase(link, request);
    if (!r.ok()) state.SkipWithError(r.detail.c_str());
    ++purchases;
  }
  const double apdus = kApdusPerPurchase + (composite ? 1 : 0);
  state.counters["apdu_per_s"] =
      benchmark::Counter(apdus * static_cast<double>(purchases), benchmark::Counter::kIsRate);
  state.counters["purchases_per_s"] =
      benchmark::Counter(static_cast<double>(purchases), benchmark::Counter::kIsRate);
}

void BM_Purchase(benchmark::State& state, bool evp) {
  std::optional<protocol::crypto::evp::ScopedEvpCrypto> baseline;
  if (evp) baseline.emplace();
  run_purchases(state, Keys::kStored, false);
}
BENCHMARK_CAPTURE(BM_Purchase, fast, false);
BENCHMARK_CAPTURE(BM_Purchase, evp, true);

// Keys derived on demand from the shared issuer table; the same card, so the per-thread key
// cache hits.
void BM_PurchaseKeyTable(benchmark::State& state) {
  run_purchases(state, Keys::kTable, false);
}
BENCHMARK(BM_PurchaseKeyTable);

void BM_CompositePurchase(benchmark::State& state) {
  run_purchases(state, Keys::kTable, true);
}
BENCHMARK(BM_CompositePurchase);

// A city: 10,000 cards tapped round robin, keys derived on demand; the 256-entry key cache
// misses almost every time, so each tap derives the card's four keys.
void BM_PurchaseManyCards(benchmark::State& state) {
  Terminal t;
  const IssuerKeyTable table({testing::issuer_keys()});
  std::vector<CpuCard> cards;
  constexpr std::size_t kCards = 10'000;
  cards.reserve(kCards);
  for (std::size_t i = 0; i < kCards; ++i) {
    cards.emplace_back(testing::card_image(i, 100'000'000), table, sim::Rng(i),
                       CardProfile::jtt978());
  }
  const std::uint64_t misses0 = IssuerKeyTable::thread_cache_misses();
  std::size_t i = 0;
  std::int64_t n = 0;
  for (auto _ : state) {
    CpuCard& card = cards[i];
    i = (i + 1) % kCards;
    card.reset();
    DirectLink link(card);
    const PurchaseResult r = t.engine.purchase(link, PurchaseRequest{1, kWhen});
    if (!r.ok()) state.SkipWithError(r.detail.c_str());
    ++n;
  }
  state.counters["key_cache_miss_ratio"] =
      static_cast<double>(IssuerKeyTable::thread_cache_misses() - misses0) /
      static_cast<double>(n ? n : 1);
  state.counters["apdu_per_s"] =
      benchmark::Counter(kApdusPerPurchase * static_cast<double>(n), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PurchaseManyCards);

void BM_Load(benchmark::State& state) {
  const IssuerKeyTable table({testing::issuer_keys()});
  KeyedLoadHost host(table);
  LoadEngine engine(testing::kTerminal, host);
  const protocol::CardImage image = testing::card_image(2, 0);
  auto card = std::make_unique<CpuCard>(image, table, sim::Rng(2), CardProfile::jtt978());
  for (auto _ : state) {
    if (card->online_counter() >= kPurchasesPerCard) {
      state.PauseTiming();
      card = std::make_unique<CpuCard>(image, table, sim::Rng(2), CardProfile::jtt978());
      state.ResumeTiming();
    }
    card->reset();
    DirectLink link(*card);
    const LoadResult r = engine.load(link, LoadRequest{0, kWhen, std::nullopt});
    if (!r.ok()) state.SkipWithError(r.detail.c_str());
  }
}
BENCHMARK(BM_Load);

// An M1 debit with the full recoverable write order (about 26 MIFARE commands).
void BM_M1Debit(benchmark::State& state) {
  M1PurseOptions o;
  o.terminal = testing::kTerminal;
  o.m1_master = testing::issuer_keys().m1;
  M1PurseEngine engine(o);
  auto card = std::make_unique<M1Card>(testing::m1_image(7, 1'000'000));
  std::int64_t n = 0;
  for (auto _ : state) {
    if (n % kPurchasesPerCard == kPurchasesPerCard - 1) {
      state.PauseTiming();
      card = std::make_unique<M1Card>(testing::m1_image(7, 1'000'000));
      state.ResumeTiming();
    }
    card->reset();
    DirectM1Link link(*card);
    const M1Result r = engine.transact(link, M1Request{1, kWhen});
    if (!r.ok()) state.SkipWithError(r.detail.c_str());
    ++n;
  }
}
BENCHMARK(BM_M1Debit);

}  // namespace
}  // namespace citycard::devices::bench
