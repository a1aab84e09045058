#include "citycard/protocol/status.h"

namespace citycard {

const char* errc_name(Errc c) {
  switch (c) {
    case Errc::kOk: return "ok";
    case Errc::kInvalidArgument: return "invalid_argument";
    case Errc::kMalformed: return "malformed";
    case Errc::kTooLarge: return "too_large";
    case Errc::kNotFound: return "not_found";
    case Errc::kBadMac: return "bad_mac";
    case Errc::kDuplicate: return "duplicate";
    case Errc::kInsufficientFunds: return "insufficient_funds";
    case Errc::kRejected: return "rejected";
    case Errc::kTorn: return "torn";
    case Errc::kTimeout: return "timeout";
    case Errc::kUnavailable: return "unavailable";
    case Errc::kIo: return "io";
    case Errc::kInternal: return "internal";
    case Errc::kPermissionDenied: return "permission_denied";
    case Errc::kConflict: return "conflict";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  return std::string(errc_name(code_)) + ": " + message_;
}

}  // namespace citycard
