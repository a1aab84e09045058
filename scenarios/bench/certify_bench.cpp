// What a certification costs in wall time: one tap through the terminal bridge (the baseline:
// harness → ZeroMQ tcp → our terminal → card APDUs and PSAM APDUs back over the bridge →
// outcome) and the whole bus_validator.lua suite against the same terminal. Prints the suite's
// time as a number of baseline taps.
//
//   cmake -S . -B build -DCITYCARD_BUILD_BENCHMARKS=ON && cmake --build build --target
//   certify_bench build/bench/certify_bench
#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <thread>

#include "citycard/hil/bridge_terminal.h"
#include "citycard/hil/conformance.h"
#include "citycard/scenarios/certify.h"

namespace citycard::scenarios {
namespace {

const std::string kBusSuite =
    std::string(CITYCARD_SOURCE_DIR) + "/scenarios/conformance/bus_validator.lua";

std::jthread start_terminal(const std::string& endpoint) {
  hil::BridgeTerminalOptions t;
  t.endpoint = endpoint;
  t.poll_wait_ms = 100;
  return std::jthread([t](std::stop_token stop) { (void)hil::run_bridge_terminal(t, stop); });
}

void BM_BridgeTap(benchmark::State& state) {
  auto bench = hil::ConformanceBench::open({});
  if (!bench) {
    state.SkipWithError(bench.status().to_string().c_str());
    return;
  }
  hil::BridgeHost& host = (*bench)->host();
  std::jthread terminal = start_terminal(host.endpoint());
  backend::CardParams cp;
  cp.opening_balance_fen = 100'000;
  std::optional<hil::HarnessCard> card;
  std::size_t taps_on_card = 0;
  for (auto _ : state) {
    if (!card || taps_on_card == 400) {
      state.PauseTiming();
      card = (*bench)->issue_card(cp).value();
      taps_on_card = 0;
      state.ResumeTiming();
    }
    const std::uint64_t session = host.present(card->model, card->uid);
    auto outcome = host.wait_outcome(session, 10'000);
    host.remove();
    ++taps_on_card;
    if (!outcome || !outcome->accepted()) {
      state.SkipWithError("a tap was refused or got no outcome");
      break;
    }
  }
  host.wait_idle(10'000);
  terminal.request_stop();
  terminal.join();
  state.counters["taps_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_BridgeTap)->UseRealTime()->MinTime(2.0)->Unit(benchmark::kMillisecond);

void BM_CertifyBusSuite(benchmark::State& state) {
  std::size_t cases = 0;
  bool passed = true;
  for (auto _ : state) {
    CertifyOptions o;
    o.suite_path = kBusSuite;
    std::jthread terminal;
    o.on_listening = [&](const std::string& endpoint) { terminal = start_terminal(endpoint); };
    o.on_done = [&] {
      terminal.request_stop();
      terminal.join();
    };
    auto r = certify(o);
    if (!r) {
      state.SkipWithError(r.status().to_string().c_str());
      return;
    }
    cases = r->cases.size();
    passed = passed && r->passed();
  }
  if (!passed) state.SkipWithError("the correct terminal failed a case");
  state.counters["cases"] = static_cast<double>(cases);
}
BENCHMARK(BM_CertifyBusSuite)->UseRealTime()->Iterations(5)->Unit(benchmark::kMillisecond);

// Keeps each benchmark's real time per iteration, to print the ratio at the end.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.run_type == Run::RT_Iteration && !r.error_occurred) {
        ns_[r.run_name.function_name] = r.real_accumulated_time * 1e9 / r.iterations;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }
  void print_ratio() const {
    auto tap = ns_.find("BM_BridgeTap"), suite = ns_.find("BM_CertifyBusSuite");
    if (tap == ns_.end() || suite == ns_.end()) return;
    std::printf("\nbus_validator.lua suite: %.0f ms = %.0f bridge taps (one tap %.2f ms)\n",
                suite->second / 1e6, suite->second / tap->second, tap->second / 1e6);
  }

 private:
  std::map<std::string, double> ns_;
};

}  // namespace
}  // namespace citycard::scenarios

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  citycard::scenarios::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_ratio();
  benchmark::Shutdown();
  return 0;
}
