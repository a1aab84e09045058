// `citycard nfc list | read | emulate | pn532`: argument parsing and printing around
// hil/nfc_tools.h.
#pragma once

#include <string>
#include <vector>

namespace citycard::scenarios {

// Parses its own options; returns the process exit code (0 ok, 1 the operation failed, 2
// usage). emulate and pn532 run until SIGINT or SIGTERM.
int cmd_nfc(const std::vector<std::string>& args);

}  // namespace citycard::scenarios
