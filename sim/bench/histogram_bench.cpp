// What recording costs a load generator: one record() per request, and what merging and
// encoding cost an agent at the end of each window.
#include <benchmark/benchmark.h>

#include "citycard/sim/histogram.h"
#include "citycard/sim/pacer.h"
#include "citycard/sim/rng.h"

namespace {

using citycard::sim::LatencyHistogram;

void BM_HistogramRecord(benchmark::State& state) {
  LatencyHistogram h;
  citycard::sim::Rng rng(1);
  std::int64_t v = 0;
  for (auto _ : state) {
    v = (v * 7 + 1'234) % 50'000;  // cheap, varied values in the 0..50 ms range
    h.record(v);
  }
  benchmark::DoNotOptimize(h.count());
}
BENCHMARK(BM_HistogramRecord);

void BM_HistogramPercentile(benchmark::State& state) {
  LatencyHistogram h;
  for (std::int64_t v = 0; v < 100'000; ++v) h.record(v * 37 % 2'000'000);
  for (auto _ : state) benchmark::DoNotOptimize(h.percentile_us(99.9));
}
BENCHMARK(BM_HistogramPercentile);

void BM_HistogramEncodeDecode(benchmark::State& state) {
  LatencyHistogram h;
  for (std::int64_t v = 0; v < 100'000; ++v) h.record(v * 37 % 2'000'000);
  for (auto _ : state) {
    auto d = LatencyHistogram::decode(h.encode());
    benchmark::DoNotOptimize(d.is_ok());
  }
}
BENCHMARK(BM_HistogramEncodeDecode);

void BM_HistogramMerge(benchmark::State& state) {
  LatencyHistogram a, b;
  for (std::int64_t v = 0; v < 10'000; ++v) b.record(v * 37 % 2'000'000);
  for (auto _ : state) a.merge(b);
  benchmark::DoNotOptimize(a.count());
}
BENCHMARK(BM_HistogramMerge);

void BM_PacerPoissonNext(benchmark::State& state) {
  auto curve = citycard::sim::RateCurve::flat(std::int64_t{1} << 60, 1e6);
  citycard::sim::Pacer p(*curve, citycard::sim::ArrivalProcess::kPoisson, citycard::sim::Rng(1));
  for (auto _ : state) benchmark::DoNotOptimize(p.next());
}
BENCHMARK(BM_PacerPoissonNext);

}  // namespace

BENCHMARK_MAIN();
