// The cost of one full swipe: card + PSAM + validator (all APDUs and crypto) + the backend's
// ingest of the uploaded record (TAC verified, deduplicated, stored, posted to the ledger),
// amortised over batches of 100 as a bus uploads them.
//
//   build/bench/scenarios_bench --benchmark_counters_tabular=true
//
// One iteration is one swipe, so the CPU column is the CPU cost of a swipe.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "citycard/backend/backend.h"
#include "citycard/devices/bus_validator.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/devices/psam.h"
#include "citycard/sim/event_loop.h"

namespace {

using namespace citycard;

// A channel straight into the backend's service: no network, so the figure is CPU and store.
class DirectChannel final : public sim::Channel {
 public:
  explicit DirectChannel(sim::RequestHandler& server) : server_(server) {}
  void request(Bytes frame, ReplyFn on_reply) override { on_reply(server_.handle(frame)); }

 private:
  sim::RequestHandler& server_;
};

struct Bench {
  sim::EventLoop clock;
  std::unique_ptr<backend::Backend> be;
  std::vector<devices::CpuCard> cards;
  std::unique_ptr<devices::Psam> psam;
  std::unique_ptr<DirectChannel> channel;
  std::unique_ptr<devices::BusValidator> validator;

  Bench(const std::string& db, bool durable, int card_count, bool with_backend) {
    backend::BackendOptions o;
    o.store.synchronous_full = durable;
    be = std::move(backend::Backend::open(db, o, clock).value());
    auto tx = be->store().begin();
    sim::Rng rng(1);
    for (int i = 0; i < card_count; ++i) {
      backend::CardParams p;
      p.opening_balance_fen = 100'000;
      cards.emplace_back(be->issue_card(p).value(), rng.fork("card-" + std::to_string(i)));
    }
    backend::TerminalParams tp;
    tp.operator_id = "bus-co-1";
    tp.route = "R1";
    tp.vehicle = "B1";
    tp.device_id = "val-1";
    psam = std::make_unique<devices::Psam>(be->register_terminal(tp).value());
    (void)tx->commit();
    channel = std::make_unique<DirectChannel>(be->service());
    devices::BusValidatorConfig vc;
    vc.device_id = "val-1";
    vc.operator_id = "bus-co-1";
    vc.route = "R1";
    vc.vehicle = "B1";
    vc.calendar_origin_epoch2000_s = o.clock_origin_epoch2000_s;  // the cards' calendar
    vc.fare_fen = 1;  // 1 fen: a card lasts 100,000 swipes
    vc.batch_size_max = 100;
    vc.queue_records_max = with_backend ? 10'000 : 2'000'000'000;
    validator = std::make_unique<devices::BusValidator>(vc, *psam, clock, *channel);
  }
};

void BM_FullSwipe(benchmark::State& state) {
  const bool durable = state.range(0) != 0;
  const std::string db = std::filesystem::temp_directory_path() / "citycard_swipe_bench.db";
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(db + s);
  Bench b(db, durable, 2000, true);
  std::size_t i = 0;
  std::uint64_t refused = 0;
  for (auto _ : state) {
    devices::CpuCard& card = b.cards[i++ % b.cards.size()];
    devices::DirectLink link(card);
    refused += b.validator->tap(link).ok() ? 0 : 1;
    card.reset();
    if (b.validator->queue_length() >= 100) b.validator->upload();
  }
  b.validator->upload();
  if (refused != 0) state.SkipWithError("taps were refused: the figure would not be a swipe's");
  state.counters["swipes_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["refused"] = static_cast<double>(refused);
  if (!b.be->check_conservation().is_ok()) state.SkipWithError("ledger does not balance");
  state.SetLabel(durable ? "sqlite file, synchronous=FULL" : "sqlite file, synchronous=NORMAL");
}
BENCHMARK(BM_FullSwipe)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

// The terminal side alone (card + PSAM + validator), for the ratio against the full swipe.
void BM_TapOnly(benchmark::State& state) {
  Bench b(":memory:", false, 2000, false);
  std::size_t i = 0;
  for (auto _ : state) {
    devices::CpuCard& card = b.cards[i++ % b.cards.size()];
    devices::DirectLink link(card);
    if (!b.validator->tap(link).ok()) {
      state.SkipWithError("a tap was refused");
      break;
    }
    card.reset();
  }
  state.counters["taps_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_TapOnly)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
