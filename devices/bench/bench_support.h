// Shared by the devices benchmarks: the test fixtures' key set and images (test_support.h) and
// a reporter that prints how much faster the fast crypto path is than the EVP baseline.
#pragma once

#include <benchmark/benchmark.h>

#include <map>
#include <string>
#include <vector>

namespace citycard::devices::bench {

// Prints every run as the console reporter does, and remembers CPU time per benchmark name so
// that main() can print the baseline / fast ratios at the end.
class RatioReporter final : public benchmark::ConsoleReporter {
 public:
  RatioReporter() : ConsoleReporter(OO_Tabular) {}  // no colour codes: output goes to logs
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) cpu_ns_[r.benchmark_name()] = r.GetAdjustedCPUTime();
    ConsoleReporter::ReportRuns(runs);
  }
  // "baseline / fast = 4.2x" when both ran.
  void print_ratio(const std::string& what, const std::string& baseline,
                   const std::string& fast) const;

 private:
  std::map<std::string, double> cpu_ns_;
};

}  // namespace citycard::devices::bench
