// Test inputs shared by the reports tests: a `citycard load` summary.json of the shape
// scenarios/src/load.cpp writes (tool, seed, knobs, headline figures, ops, windows, the latency
// distribution, a sweep's steps).
#pragma once

#include <string>

#include "citycard/reports/trace.h"

namespace citycard::reports::testing {

inline Json sample_load_summary(bool sweep, bool fail) {
  Json s = {
      {"tool", "citycard load"},
      {"seed", 42},
      {"scenario", "rush_hour"},
      {"scenario_path", "scenarios/rush_hour.lua"},
      {"knobs", {{"seed", 42}, {"duration_s", 4.0}, {"rate_per_s", 5000}, {"window_ms", 1000}}},
      {"city", {{"cards", 20000}, {"routes", 10}}},
      {"duration_s", 4.0},
      {"elapsed_s", 4.2},
      {"offered_per_s", 4990.5},
      {"achieved_per_s", fail ? 4100.0 : 4985.0},
      {"records_per_s", 4500.0},
      {"late_sends", 3},
      {"errors", fail ? 17 : 0},
      {"refused", 0},
      {"unfinished_requests", 0},
      {"unfinished_records", 0},
      {"p50_ms", 0.61},
      {"p90_ms", 1.9},
      {"p99_ms", 7.25},
      {"p999_ms", 31.5},
      {"max_ms", 44.0},
      {"requests", 2400},
      {"workers", 1},
      {"worker_busy_fraction", 0.35},
      {"error_codes", fail ? Json{{"TIMEOUT", 17}} : Json::object()},
      {"latency_distribution", Json::parse(R"([{"from_ms":0.2,"to_ms":0.5,"count":700},)"
                                           R"({"from_ms":0.5,"to_ms":1.0,"count":1200},)"
                                           R"({"from_ms":1.0,"to_ms":2.0,"count":300},)"
                                           R"({"from_ms":2.0,"to_ms":5.0,"count":150},)"
                                           R"({"from_ms":5.0,"to_ms":10.0,"count":40},)"
                                           R"({"from_ms":10.0,"to_ms":20.0,"count":7},)"
                                           R"({"from_ms":20.0,"to_ms":44.0,"count":3}])")},
      {"backend", {{"records_accepted", 18000}, {"ledger_balanced", true}}},
      {"host", {{"cpus", 2}, {"load_average_1m_before", 1.5}}},
      {"send_lag", {{"p99_ms", 0.3}, {"max_ms", 2.0}}},
      {"exit_code", fail ? 1 : 0}};
  s["ops"] = {{"swipe",
               {{"planned", 18000},
                {"sent", 18000},
                {"ok", 18000},
                {"errors", 0},
                {"timeouts", 0},
                {"refused", 0},
                {"late", 0},
                {"offered_per_s", 4500.0},
                {"achieved_per_s", 4286.0},
                {"latency",
                 {{"p50_ms", 0.01},
                  {"p90_ms", 0.02},
                  {"p99_ms", 0.05},
                  {"p999_ms", 0.1},
                  {"max_ms", 0.3}}}}},
              {"balance_query",
               {{"planned", 1960},
                {"sent", 1960},
                {"ok", fail ? 1943 : 1960},
                {"errors", fail ? 17 : 0},
                {"timeouts", fail ? 17 : 0},
                {"refused", 0},
                {"late", 3},
                {"offered_per_s", 490.0},
                {"achieved_per_s", 466.7},
                {"latency",
                 {{"p50_ms", 0.5},
                  {"p90_ms", 1.2},
                  {"p99_ms", 6.5},
                  {"p999_ms", 30.0},
                  {"max_ms", 44.0}}}}}};
  Json windows = Json::array();
  const int steps = sweep ? 3 : 1;
  for (int step = 0; step < steps; ++step) {
    for (int i = 0; i < 4; ++i) {
      Json w = {{"window", i},
                {"t_start_s", i},
                {"t_end_s", i + 1},
                {"offered_per_s", 5000 * (step + 1)},
                {"achieved_per_s", 4900 * (step + 1) - (i == 3 ? 800 : 0)},
                {"p50_ms", 0.5 + i * 0.1},
                {"p99_ms", 5.0 + i},
                {"p999_ms", 20.0 + 3 * i},
                {"max_ms", 40.0}};
      if (sweep) w["step"] = step;
      windows.push_back(w);
    }
  }
  s["windows"] = windows;
  if (sweep) {
    Json st = Json::array();
    for (int i = 0; i < steps; ++i) {
      st.push_back({{"rate_per_s", 5000 * (i + 1)},
                    {"offered_per_s", 4990.0 * (i + 1)},
                    {"achieved_per_s", i == 2 ? 11000.0 : 4985.0 * (i + 1)},
                    {"p50_ms", 0.5 * (i + 1)},
                    {"p99_ms", i == 2 ? 340.0 : 5.0 * (i + 1)},
                    {"p999_ms", i == 2 ? 900.0 : 20.0 * (i + 1)},
                    {"max_ms", 1000.0},
                    {"errors", 0},
                    {"refused", i == 2 ? 11150 : 0},
                    {"saturated", i == 2}});
    }
    s["sweep"] = st;
  }
  return s;
}

}  // namespace citycard::reports::testing
