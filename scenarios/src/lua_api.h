// The scenario API: the Lua globals a scenario calls (documented in scenarios/README.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "citycard/reports/run_summary.h"
#include "citycard/reports/trace.h"
#include "citycard/scenarios/lua_sandbox.h"
#include "citycard/scenarios/world.h"

namespace citycard::scenarios {

// Everything one scenario run shares with its bindings. Owned by the runner; the bindings get
// a pointer to it as an upvalue.
struct ScenarioContext {
  reports::RunSummary& summary;
  reports::TraceWriter& trace;
  World& world;
  std::int64_t start_time_of_day_s = 0;  // the city's start, seconds after midnight
  std::vector<std::string> tag_filter;    // run only scenarios with one of these tags
  bool skipped = false;                   // describe{} found none of them: stop quietly
  LuaSandbox* sandbox = nullptr;          // for callbacks (at, expect_within)
  std::string callback_error;             // a callback's error, raised when the loop returns

  // Time-bounded expectations not decided yet; the runner fails them at the end of the run.
  struct Pending {
    std::size_t id;
    std::string name;
    std::string where;
    std::int64_t deadline_us;
  };
  std::vector<Pending> pending;
  std::size_t next_pending_id = 0;
};

// Records an expectation in the summary and the trace.
void record_expectation(ScenarioContext& c, reports::Expectation e);

// The error message with which describe{} stops a scenario the tag filter leaves out.
inline constexpr const char* kSkippedMarker = "citycard: scenario skipped by tag filter";

void install_api(LuaSandbox& sandbox, ScenarioContext& context);

}  // namespace citycard::scenarios
