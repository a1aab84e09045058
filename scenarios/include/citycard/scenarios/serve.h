// `citycard backend`: the clearing centre served on a ZeroMQ endpoint in wall time.
#pragma once

#include <string>
#include <vector>

namespace citycard::scenarios {

// Parses its own options; returns the process exit code.
int cmd_backend(const std::vector<std::string>& args);

}  // namespace citycard::scenarios
