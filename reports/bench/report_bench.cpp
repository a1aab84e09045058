// Rendering the reports of a large run: a trace of N swipes (default 2,000,000, as in a big
// city's peak hour) written with the real TraceWriter, then render_run() timed end to end.
// With it, the operator reports' transit totals for 400 routes and 20,000 vehicles.
// Prints the time, the swipes rendered per second and the report's size.
//
//   build/bench/reports_bench [swipes]
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "citycard/reports/report.h"
#include "citycard/reports/trace.h"
#include "citycard/sim/clock.h"

using namespace citycard::reports;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  const long swipes = argc > 1 ? std::atol(argv[1]) : 2'000'000;
  const std::string dir = fs::temp_directory_path() / "citycard_report_bench";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    auto trace = TraceWriter::open(dir + "/trace.jsonl");
    for (long i = 0; i < swipes; ++i) {
      const bool ok = i % 23 != 0;
      const int route = static_cast<int>(i % 400);
      Json ev{{"card", "31000000" + std::to_string(10000000 + i % 5'000'000)},
              {"route", "R" + std::to_string(route)},
              {"vehicle", "R" + std::to_string(route) + "-B" + std::to_string(i % 50)},
              {"ok", ok}};
      if (ok) {
        ev["amount_fen"] = 200;
        ev["counter"] = i % 1000;
        ev["balance_after_fen"] = 5000;
      } else {
        ev["reason"] = "insufficient balance";
      }
      (*trace)->event(i * 1800, "swipe", std::move(ev));
    }
    // The end of run's operator reports: transit per route and per vehicle, as the runner
    // writes them (scenarios/src/operator_trace.cpp).
    for (int route = 0; route < 400; ++route) {
      (*trace)->event(swipes * 1800, "op_transit",
                      {{"dimension", "route"}, {"operator", "BUS1"},
                       {"key", "R" + std::to_string(route)}, {"count", swipes / 400},
                       {"amount_fen", swipes / 2}, {"full_fare_fen", swipes / 2},
                       {"transfers", 0}});
      for (int bus = 0; bus < 50; ++bus) {
        (*trace)->event(swipes * 1800, "op_transit",
                        {{"dimension", "vehicle"}, {"operator", "BUS1"},
                         {"key", "R" + std::to_string(route) + "-B" + std::to_string(bus)},
                         {"count", swipes / 20000}, {"amount_fen", swipes / 100},
                         {"full_fare_fen", swipes / 100}, {"transfers", 0}});
      }
    }
    RunSummary s;
    s.scenario = "report-bench";
    s.seed = 1;
    s.swipes = static_cast<std::uint64_t>(swipes);
    s.ledger_balanced = true;
    s.expectations.push_back({"ok", true, "", "bench", 0});
    s.trace_digest = (*trace)->digest_hex();
    (void)(*trace)->close();
    (void)write_text_file(dir + "/summary.json", to_json(s).dump());
  }
  const auto trace_bytes = fs::file_size(dir + "/trace.jsonl");
  const citycard::sim::WallClock stopwatch;
  const std::int64_t t0 = stopwatch.now_us();
  citycard::Status st = render_run(dir);
  const double s = static_cast<double>(stopwatch.now_us() - t0) / 1e6;
  if (!st.is_ok()) {
    std::fprintf(stderr, "render_run: %s\n", st.to_string().c_str());
    return 1;
  }
  std::printf("rendered a %ld-swipe run (trace %.1f MB) in %.2f s: %.0f swipes/s; report.html %.1f "
              "KB, junit.xml %.1f KB\n",
              swipes, static_cast<double>(trace_bytes) / 1e6, s, static_cast<double>(swipes) / s,
              static_cast<double>(fs::file_size(dir + "/report.html")) / 1e3,
              static_cast<double>(fs::file_size(dir + "/junit.xml")) / 1e3);
  fs::remove_all(dir);
  return 0;
}
