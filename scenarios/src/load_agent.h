// The coordinator side of distributed load (the agent side is run_agent() in load.h).
//
// Protocol (load.proto; one frame per message; agents are DEALERs, the coordinator a ROUTER):
//   agent -> Hello{name, threads}
//   coordinator, once `agents` have said hello -> each: Assignment{plan, its share of the
//     city, backend endpoint, index, count}
//   agent -> Ready (cards and buses built, socket to the backend open) | Failed{why}
//   coordinator, once all are ready -> each: Start (each agent starts its schedule on receipt)
//   agent -> Window{...} as each window ends, then Done{totals}
//   coordinator -> Abort{why} to all when one fails or a deadline passes.
// Every wait has a deadline, so a lost agent ends the run with an error, never a hang.
//
// Threads: the caller's thread.
#pragma once

#include <nlohmann/json.hpp>

#include "citycard/scenarios/load.h"
#include "load.pb.h"
#include "load_report.h"
#include "load_stats.h"

namespace citycard::scenarios {

struct CoordinatorResult {
  LoadTotals totals;
  nlohmann::json agents = nlohmann::json::array();  // per agent: name, threads, figures
};

Result<CoordinatorResult> coordinate(const LoadPlan& plan, const LoadRunOptions& options,
                                     const citycard::load::City& city,
                                     const std::string& backend_endpoint, RunReport& report);

}  // namespace citycard::scenarios
