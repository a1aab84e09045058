// `citycard certify`: runs a conformance suite (Lua, scenarios/conformance/*.lua) against a
// terminal under test that connects over the terminal bridge (hil/bridge.h), and writes JUnit
// XML, an HTML page and a certificate signed by the harness CA. `citycard terminal` runs our
// own terminal (hil/bridge_terminal.h) as a terminal under test.
//
// The suite API is in hil/README.md ("Certification"). Each case runs in order, on fresh
// cards; after each the card is removed, the link is brought up and the terminal's queue is
// waited empty.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "citycard/protocol/status.h"
#include "citycard/reports/certify_report.h"

namespace citycard::scenarios {

struct CertifyOptions {
  std::string suite_path;
  std::string endpoint = "tcp://127.0.0.1:0";  // where the harness listens for the terminal
  std::string out_dir;                         // empty: no files
  std::string data_path = ":memory:";          // the harness backend's (and CA's) database
  int hello_wait_ms = 30'000;                  // how long to wait for the terminal's Hello
  int step_timeout_ms = 10'000;                // a terminal silent this long fails the step
  std::vector<std::string> only;               // run only these cases (names); empty: all
  // Called once the harness listens, with its endpoint (before the terminal's Hello).
  std::function<void(const std::string& endpoint)> on_listening;
  // Called after the last case, while the harness still answers (to stop a terminal).
  std::function<void()> on_done;
};

// The result even when cases fail; an error when the suite cannot run at all (no such file, a
// script error outside a case, no terminal said Hello, the out folder cannot be written).
Result<reports::CertifyResult> certify(const CertifyOptions& options);

int cmd_certify(const std::vector<std::string>& args);
int cmd_terminal(const std::vector<std::string>& args);

}  // namespace citycard::scenarios
