// A terminal under test: our own terminal code (devices::TerminalCore, the purchase engine,
// the upload queue, devices::FarePolicy) driven as a "vendor terminal" through the bridge:
// its card, its PSAM and its backend are the bridge's slots. Injectable defects make it a
// terminal with a known bug, to show that a conformance suite catches each one.
//
// `citycard terminal --bridge ENDPOINT --kind bus|pos [--defect X]...` runs it as a process.
// Single-threaded; run() returns when `stop` is requested.
#pragma once

#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "citycard/protocol/status.h"

namespace citycard::hil {

enum class TerminalDefect : std::uint8_t {
  kSkipBlacklist,   // never consults the blacklist
  kWrongFare,       // ignores the card-type discount
  kNoTearRecovery,  // forgets a torn purchase: the re-tap charges again
  kDoubleUpload,    // sends every batch a second time under a new batch number
  kBadMac,          // a wrong MAC1 on CJ/T 166 cards (a wrong diversification for that family)
  kSlow,            // reads the whole log on every tap: over the time budget
  kIgnoreParams,    // keeps the fare it started with; never takes a parameter update
  kNoOffline,       // refuses to sell while the backend link is down
};
inline constexpr std::size_t kTerminalDefectCount = 8;

const char* terminal_defect_name(TerminalDefect d);
std::optional<TerminalDefect> terminal_defect_from_name(std::string_view name);
std::vector<TerminalDefect> all_terminal_defects();

struct BridgeTerminalOptions {
  std::string endpoint;
  std::string kind = "bus";  // bus | pos
  std::string name = "citycard-terminal";
  std::set<TerminalDefect> defects;
  int poll_wait_ms = 200;
  int timeout_ms = 2000;  // a request the harness does not answer in this time fails
};

// Runs the terminal until `stop`. kUnavailable when the harness never answers the Hello;
// kRejected when it refuses it.
Status run_bridge_terminal(const BridgeTerminalOptions& options, std::stop_token stop);

}  // namespace citycard::hil
