// Memory per simulated card: the fixed object (sizeof) and the heap it holds, both as the card
// accounts for it (heap_bytes) and as the allocator sees it (glibc mallinfo2, which includes
// malloc's per-block overhead). Measured over 100,000 cards, right after personalisation and
// after one transaction each (which allocates the CPU card's file block). The goal is 256
// bytes of hot state per card, so that 20 million cards fit in memory.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <cmath>
#include <memory>
#include <vector>

#include "../src/test_support.h"
#include "citycard/devices/card_keys.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/m1_card.h"
#include "citycard/devices/m1_purse.h"
#include "citycard/devices/psam.h"
#include "citycard/devices/purchase.h"

namespace citycard::devices::bench {
namespace {

const protocol::DateTime7 kWhen = array_from_hex<7>("20240315081530");
constexpr std::size_t kCards = 100'000;
constexpr double kCity = 20e6;

double heap_in_use() {
  return static_cast<double>(mallinfo2().uordblks);
}

template <class Card>
void set_counters(benchmark::State& state, const std::vector<Card>& cards, double real_before,
                  double real_after_issue, double real_after_txn, double accounted_issue,
                  double accounted_txn) {
  const double n = static_cast<double>(cards.size());
  // Whole bytes: the console would print 0.0003 as "300u".
  auto bytes = [](double b) { return std::round(b); };
  state.counters["sizeof_B"] = sizeof(Card);
  state.counters["heap_issued_B"] = bytes(accounted_issue / n);
  state.counters["heap_issued_real_B"] = bytes((real_after_issue - real_before) / n);
  state.counters["heap_used_B"] = bytes(accounted_txn / n);
  state.counters["heap_used_real_B"] = bytes((real_after_txn - real_before) / n);
  state.counters["GiB_20M_used"] =
      (static_cast<double>(sizeof(Card)) + (real_after_txn - real_before) / n) * kCity /
      (1024.0 * 1024 * 1024);
}

void BM_MemoryPerCpuCard(benchmark::State& state, bool key_table) {
  for (auto _ : state) {
    const IssuerKeyTable table({testing::issuer_keys()});
    std::vector<CpuCard> cards;
    cards.reserve(kCards);  // the vector's own array is the sizeof part, not per-card heap
    const double before = heap_in_use();
    for (std::size_t i = 0; i < kCards; ++i) {
      const protocol::CardImage image = testing::card_image(i, 100'000);
      if (key_table) {
        cards.emplace_back(image, table, sim::Rng(i), CardProfile::jtt978());
      } else {
        cards.emplace_back(image, sim::Rng(i));
      }
    }
    const double issued = heap_in_use();
    double accounted_issue = 0;
    for (const auto& c : cards) accounted_issue += static_cast<double>(c.heap_bytes());
    Psam psam(testing::psam_image());
    DirectLink sam_link(psam);
    SamClient sam(sam_link);
    PurchaseEngine engine(sam);
    (void)engine.open();
    const double terminal = heap_in_use() - issued;
    for (auto& c : cards) {
      DirectLink link(c);
      if (!engine.purchase(link, PurchaseRequest{1, kWhen}).ok()) state.SkipWithError("purchase");
      c.reset();
    }
    const double used = heap_in_use() - terminal;
    double accounted_txn = 0;
    for (const auto& c : cards) accounted_txn += static_cast<double>(c.heap_bytes());
    set_counters(state, cards, before, issued, used, accounted_issue, accounted_txn);
  }
}
BENCHMARK_CAPTURE(BM_MemoryPerCpuCard, key_table, true)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_MemoryPerCpuCard, stored_keys, false)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

void BM_MemoryPerM1Card(benchmark::State& state) {
  for (auto _ : state) {
    std::vector<M1Card> cards;
    cards.reserve(kCards);
    const double before = heap_in_use();
    for (std::size_t i = 0; i < kCards; ++i) {
      cards.emplace_back(testing::m1_image(static_cast<std::uint32_t>(i + 1), 100'000));
    }
    const double issued = heap_in_use();
    double accounted = 0;
    for (const auto& c : cards) accounted += static_cast<double>(c.heap_bytes());
    M1PurseOptions o;
    o.terminal = testing::kTerminal;
    o.m1_master = testing::issuer_keys().m1;
    M1PurseEngine engine(o);
    for (auto& c : cards) {
      DirectM1Link link(c);
      if (!engine.transact(link, M1Request{1, kWhen}).ok()) state.SkipWithError("debit");
      c.reset();
    }
    const double used = heap_in_use();
    set_counters(state, cards, before, issued, used, accounted, accounted);
  }
}
BENCHMARK(BM_MemoryPerM1Card)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace citycard::devices::bench
