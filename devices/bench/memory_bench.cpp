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
#include "citycard/devices/packed_files.h"
#include "citycard/devices/psam.h"
#include "citycard/devices/purchase.h"
#include "citycard/devices/sam_client.h"
#include "citycard/protocol/capp.h"

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
  const double per_card = static_cast<double>(sizeof(Card)) + (real_after_txn - real_before) / n;
  state.counters["total_B"] = bytes(per_card);
  state.counters["cards_per_GiB"] = bytes(1024.0 * 1024 * 1024 / per_card);
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

// A card after a commuter's fortnight: 12 composite purchases through real terminals, so the
// 0x18 log (10 records) and the 0x1E travel file (10 records) are full and the 0x1A metro
// record is written: bus boardings (travel record: the vehicle's terminal, the stop) and metro
// entries and exits (metro and travel records). The city has kBuses vehicles with
// kStops stops each and kGates metro gates, each terminal with its own PSAM; terminal ids,
// stops and the static part of each record are interned once for the city (InternTable), and
// that table's growth is in heap_used_real_B (and printed alone as intern_table_B).
constexpr std::size_t kBuses = 400;
constexpr std::size_t kStops = 25;
constexpr std::size_t kGates = 40;
constexpr std::size_t kFilledCards = 20'000;
constexpr int kTripsPerCard = 12;

struct CityTerminal {
  explicit CityTerminal(const protocol::TerminalId& id)
      : psam(testing::psam_image(id)), link(psam), sam(link), engine(sam) {
    (void)engine.open();
  }
  Psam psam;
  DirectLink link;
  SamClient sam;
  PurchaseEngine engine;
};

void BM_MemoryPerCpuCardFilled(benchmark::State& state) {
  for (auto _ : state) {
    const IssuerKeyTable table({testing::issuer_keys()});
    std::vector<std::unique_ptr<CityTerminal>> terminals;
    for (std::size_t i = 0; i < kBuses + kGates; ++i) {
      protocol::TerminalId id{0x31,
                              0x00,
                              static_cast<std::uint8_t>(i < kBuses ? 0x01 : 0x02),
                              0x00,
                              static_cast<std::uint8_t>(i >> 8),
                              static_cast<std::uint8_t>(i)};
      terminals.push_back(std::make_unique<CityTerminal>(id));
    }
    std::vector<CpuCard> cards;
    cards.reserve(kFilledCards);
    const double intern_before = static_cast<double>(InternTable::shared().bytes());
    const double before = heap_in_use();
    for (std::size_t i = 0; i < kFilledCards; ++i) {
      cards.emplace_back(testing::card_image(i, 100'000), table, sim::Rng(i),
                         CardProfile::jtt978());
    }
    const double issued = heap_in_use();
    sim::Rng rng(42);
    std::int64_t now = 757'382'400;  // 2024-01-01
    for (auto& c : cards) {
      bool inside = false;  // in the metro
      std::int64_t t = now + static_cast<std::int64_t>(rng.uniform(86'400));
      for (int trip = 0; trip < kTripsPerCard; ++trip) {
        t += 1'800 + static_cast<std::int64_t>(rng.uniform(40'000));
        const protocol::DateTime7 when = protocol::datetime_from_epoch2000(t);
        PurchaseRequest req{0, when, {}};
        CityTerminal* term = nullptr;
        protocol::TravelRecord travel;
        if (inside || rng.bernoulli(0.4)) {  // metro
          const std::size_t gate = rng.uniform(kGates);
          term = terminals[kBuses + gate].get();
          protocol::MetroRecord m;
          if (!inside) {
            m.state = protocol::MetroRecord::kEntered;
            m.entry_station = static_cast<std::uint16_t>(gate / 2);
            m.entry_device = {0x02, 0x00, 0x00, static_cast<std::uint8_t>(gate)};
            m.entry_datetime = when;
          } else {
            m = *protocol::MetroRecord::decode(c.metro_record(1));
            m.state = protocol::MetroRecord::kExited;
            m.exit_station = static_cast<std::uint16_t>(gate / 2);
            m.exit_datetime = when;
            m.fare_fen = 300 + 100 * static_cast<std::uint32_t>(rng.uniform(5));
            req.amount_fen = m.fare_fen;
          }
          inside = !inside;
          req.capp_updates.push_back(CappUpdate{protocol::sfi::kMetro, 0x01, m.encode()});
          travel.sub_type = inside ? 0x01 : 0x02;
          travel.station = {0x01, 0x00, static_cast<std::uint8_t>(gate / 2)};
        } else {  // bus boarding
          const std::size_t bus = rng.uniform(kBuses);
          term = terminals[bus].get();
          req.amount_fen = 200;
          travel.sub_type = 0x01;
          travel.station = {0x00, static_cast<std::uint8_t>(bus >> 8),
                            static_cast<std::uint8_t>(bus), 0x00,
                            static_cast<std::uint8_t>(rng.uniform(kStops))};
        }
        const protocol::TerminalId& tid = term->engine.terminal_id();
        std::copy(tid.begin(), tid.end(), travel.terminal.begin() + 2);
        travel.amount_fen = req.amount_fen;
        travel.balance_after_fen = c.balance_fen() - std::min(c.balance_fen(), req.amount_fen);
        travel.datetime = when;
        travel.city = {0x31, 0x00};
        travel.institution = {0x31, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00};
        req.capp_updates.push_back(CappUpdate{protocol::sfi::kTravel, 0x00, travel.encode()});
        DirectLink link(c);
        if (!term->engine.purchase(link, req).ok()) state.SkipWithError("purchase");
        c.reset();  // out of the field
      }
    }
    const double used = heap_in_use();
    double accounted_issue = 0, accounted = 0;
    for (const auto& c : cards) accounted += static_cast<double>(c.heap_bytes());
    set_counters(state, cards, before, issued, used, accounted_issue, accounted);
    const double n = static_cast<double>(cards.size());
    const double intern = static_cast<double>(InternTable::shared().bytes()) - intern_before;
    state.counters["intern_table_B"] = std::round(intern);
    const double per_card = static_cast<double>(sizeof(CpuCard)) + (used - before) / n;
    state.counters["total_no_table_B"] = std::round(per_card - intern / n);
    // A city: 20 M such cards and one table (its size depends on the terminals and stops, not
    // on the number of cards).
    state.counters["GiB_20M_city"] =
        ((per_card - intern / n) * kCity + intern) / (1024.0 * 1024 * 1024);
  }
}
BENCHMARK(BM_MemoryPerCpuCardFilled)->Iterations(1)->Unit(benchmark::kMillisecond);

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
