// Private to devices: a status word as text for refusal messages, "6A82 (file or application
// not found)".
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "citycard/protocol/apdu.h"

namespace citycard::devices {

inline std::string sw_text(std::uint16_t sw) {
  char hex[8];
  std::snprintf(hex, sizeof hex, "%04X", sw);
  return std::string(hex) + " (" + protocol::sw_name(sw) + ")";
}

}  // namespace citycard::devices
