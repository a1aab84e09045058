// main() of devices_bench: runs the benchmarks, then prints the ratios of the EVP baseline to
// the fast crypto path (crypto_evp.h) for the pairs that ran.
#include <cstdio>

#include "bench_support.h"

namespace citycard::devices::bench {

void RatioReporter::print_ratio(const std::string& what, const std::string& baseline,
                                const std::string& fast) const {
  const auto b = cpu_ns_.find(baseline);
  const auto f = cpu_ns_.find(fast);
  if (b == cpu_ns_.end() || f == cpu_ns_.end() || f->second <= 0) return;
  std::printf("%-34s baseline (EVP) %10.1f ns, fast %10.1f ns: %.1fx\n", what.c_str(), b->second,
              f->second, b->second / f->second);
}

}  // namespace citycard::devices::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  citycard::devices::bench::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\n");
  reporter.print_ratio("single-DES MAC (18 bytes)", "BM_DesMac/evp", "BM_DesMac/fast");
  reporter.print_ratio("card key diversification", "BM_Diversify/evp", "BM_Diversify/fast");
  reporter.print_ratio("full purchase, card + PSAM", "BM_Purchase/evp", "BM_Purchase/fast");
  benchmark::Shutdown();
  return 0;
}
