// The rush hour at city scale, in virtual time: the whole World (cards with full card crypto,
// PSAMs, bus validators, the simulated GPRS network, blacklist and parameter pulls, the
// embedded backend with a real SQLite file verifying every TAC, clearing every record and
// posting it to the ledger), one hour of Poisson taps, then the drain.
//
//   build/bench/scenarios_city_bench --benchmark_counters_tabular=true
//   build/bench/scenarios_city_bench --benchmark_filter='RushHour/2000/'   # one size
//
// Arguments: buses, cards, swipes in the hour, the backend's commit interval in ms of virtual
// time (CityConfig::commit_interval_us; 0: every request commits and is answered on its own,
// the baseline of vs_small). Counters (one iteration per size, timed by the
// wall clock around the hour and the drain; building the city is timed apart as build_s):
//   swipes_per_s   simulated sales per second of wall time (goal at full scale: >= 100,000)
//   virtual_x      virtual seconds per wall second
//   us_per_swipe   wall microseconds per sale
//   build_s        issuing the cards and registering the buses through the backend
//   maxrss_MiB     the process's peak resident memory so far (getrusage ru_maxrss; the sizes
//                  run smallest first, so each figure is that size's peak)
//   vs_small       us_per_swipe relative to the first run (the smallest size, each request
//                  committed on its own) of the same process
//   requests_per_commit  requests the embedded backend answered per commit (1 when 0 ms)
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "citycard/reports/trace.h"
#include "citycard/sim/clock.h"
#include "citycard/scenarios/world.h"

namespace {

using namespace citycard;
using namespace citycard::scenarios;

double baseline_us_per_swipe = 0;
const sim::WallClock stopwatch;  // the benchmark's own timing of the hour and the build

// A SQLite file of this process's own (two runs of the bench do not share one).
std::string bench_db(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("citycard_city_bench_" + name + "_" + std::to_string(::getpid()) + ".db"))
      .string();
}

void remove_db(const std::string& db) {
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(db + s);
}

double maxrss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // KiB on Linux
}

void BM_RushHour(benchmark::State& state) {
  const std::int64_t buses = state.range(0), cards = state.range(1), swipes = state.range(2);
  const std::int64_t commit_ms = state.range(3);
  const std::string db = bench_db(std::to_string(buses));
  for (auto _ : state) {
    state.PauseTiming();
    remove_db(db);
    auto trace = std::move(reports::TraceWriter::open("").value());
    World world(1, *trace, db);
    CityConfig c;
    parse_calendar("2026-11-23 07:00", c.start_epoch2000_s);
    c.cards = cards;
    c.buses_per_route = 20;
    c.routes = buses / 20;
    c.balance_fen_min = 2'000;
    c.balance_fen_max = 10'000;
    c.upload_interval_us = 60'000'000;
    c.batch_size_max = 100;
    c.commit_interval_us = commit_ms * 1000;
    const std::int64_t b0 = stopwatch.now_us();
    if (Status s = world.build(c); !s) {
      state.SkipWithError(s.message().c_str());
      return;
    }
    const double build_s =
        static_cast<double>(stopwatch.now_us() - b0) / 1e6;
    (void)world.add_phase(0, 3'600'000'000, static_cast<double>(swipes));
    state.ResumeTiming();
    const std::int64_t t0 = stopwatch.now_us();
    (void)world.run_until(3'600'000'000);
    (void)world.drain(3'600'000'000);
    const double wall =
        static_cast<double>(stopwatch.now_us() - t0) / 1e6;
    state.PauseTiming();
    const WorldStats st = world.stats();
    if (st.uploaded_records != st.swipes || !world.conservation().is_ok()) {
      state.SkipWithError("the city did not clear every sale or the ledger does not balance");
    }
    const double us_per_swipe = wall * 1e6 / static_cast<double>(st.swipes);
    if (baseline_us_per_swipe == 0) baseline_us_per_swipe = us_per_swipe;
    state.counters["swipes"] = static_cast<double>(st.swipes);
    state.counters["swipes_per_s"] = static_cast<double>(st.swipes) / wall;
    state.counters["virtual_x"] = static_cast<double>(world.loop().now_us()) / 1e6 / wall;
    state.counters["us_per_swipe"] = us_per_swipe;
    state.counters["build_s"] = build_s;
    state.counters["maxrss_MiB"] = maxrss_mib();
    state.counters["vs_small"] = us_per_swipe / baseline_us_per_swipe;
    state.counters["requests_per_commit"] =
        st.commit_groups > 0
            ? static_cast<double>(st.grouped_requests) / static_cast<double>(st.commit_groups)
            : 1.0;
    state.ResumeTiming();
  }
  remove_db(db);
}

// Smallest first: the baseline of vs_small, and the order that keeps maxrss per size honest.
BENCHMARK(BM_RushHour)
    ->Args({100, 10'000, 10'000, 0})
    ->Args({100, 10'000, 10'000, 1'000})
    ->Args({2'000, 200'000, 200'000, 0})
    ->Args({2'000, 200'000, 200'000, 1'000})
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

// Per-sale cost of the terminal kinds, in one run: mode 0 flat-fare buses (the baseline),
// mode 1 buses with a card-type mix and discounts (the bus reads the card type: 2 more
// APDUs), mode 2 taxis (TaxiModule: meter, sale core, durable log). 100 terminals, 10,000
// cards, 10,000 sales in one virtual hour, then the drain.
//   build/bench/scenarios_city_bench --benchmark_filter=SaleKinds --benchmark_counters_tabular=true
// Counters: us_per_sale (wall microseconds per sale), vs_bus (relative to mode 0).
double bus_us_per_sale = 0;

void BM_SaleKinds(benchmark::State& state) {
  const std::int64_t mode = state.range(0);
  const std::string db = bench_db("kinds");
  for (auto _ : state) {
    state.PauseTiming();
    remove_db(db);
    auto trace = std::move(reports::TraceWriter::open("").value());
    World world(1, *trace, db);
    CityConfig c;
    parse_calendar("2026-11-23 07:00", c.start_epoch2000_s);
    c.cards = 10'000;
    c.routes = 5;
    c.buses_per_route = 20;
    c.balance_fen_min = 50'000;
    c.balance_fen_max = 50'000;
    if (mode == 1) {
      c.card_mix = {0.6, 0.3, 0.1, 0.0};
      c.card_discount_bp = {0, 5000, 5000, 0};
    }
    if (mode == 2) c.taxis = 100;
    if (Status s = world.build(c); !s) {
      state.SkipWithError(s.message().c_str());
      return;
    }
    (void)(mode == 2 ? world.add_taxi_trips(0, 3'600'000'000, 10'000)
                     : world.add_phase(0, 3'600'000'000, 10'000));
    state.ResumeTiming();
    const std::int64_t t0 = stopwatch.now_us();
    (void)world.run_until(3'600'000'000);
    (void)world.drain(3'600'000'000);
    const double wall =
        static_cast<double>(stopwatch.now_us() - t0) / 1e6;
    state.PauseTiming();
    const WorldStats st = world.stats();
    const std::uint64_t sales = st.swipes + st.taxi_trips;
    if (st.uploaded_records != sales || !world.conservation().is_ok()) {
      state.SkipWithError("the city did not clear every sale or the ledger does not balance");
    }
    const double us = wall * 1e6 / static_cast<double>(sales);
    if (mode == 0) bus_us_per_sale = us;
    state.counters["sales"] = static_cast<double>(sales);
    state.counters["us_per_sale"] = us;
    state.counters["vs_bus"] = bus_us_per_sale > 0 ? us / bus_us_per_sale : 0;
    state.ResumeTiming();
  }
  remove_db(db);
}

BENCHMARK(BM_SaleKinds)
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
