// Private to devices: building PurchaseResult refusals from what a card or SAM answered.
// Shared by the purchase, load and blacklist-lock sequences.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "citycard/devices/purchase.h"
#include "citycard/protocol/apdu.h"
#include "sw_text.h"

namespace citycard::devices {

inline PurchaseResult refused(Refusal refusal, std::uint16_t sw, std::string detail) {
  PurchaseResult r;
  r.refusal = refusal;
  r.sw = sw;
  r.detail = std::move(detail);
  return r;
}

// A card step that got no answer, or a status word other than 9000.
inline PurchaseResult card_refusal(const char* step, const Result<protocol::Response>& r) {
  namespace sw = protocol::sw;
  if (!r) {
    const Refusal why = r.status().code() == Errc::kTorn ? Refusal::kTorn : Refusal::kCardError;
    return refused(why, 0, std::string(step) + ": " + r.status().to_string());
  }
  Refusal why = Refusal::kCardError;
  switch (r->sw) {
    case sw::kBlockedSelected:
    case sw::kBlockedTerminated:
    case sw::kAppBlockedPermanently:
      why = Refusal::kCardBlocked;
      break;
    case sw::kInsufficientBalance:
      why = Refusal::kInsufficientBalance;
      break;
    default:
      break;
  }
  return refused(why, r->sw, std::string(step) + " answered " + sw_text(r->sw));
}

inline PurchaseResult wrong_shape(const char* step, const protocol::Response& r,
                                  std::size_t expected_bytes) {
  return refused(Refusal::kCardError, r.sw,
                 std::string(step) + " answered " + std::to_string(r.data.size()) +
                     " bytes of data, expected " + std::to_string(expected_bytes));
}

inline PurchaseResult sam_refusal(const char* step, const Status& s) {
  const Refusal why = s.code() == Errc::kBadMac ? Refusal::kMac2Invalid : Refusal::kSamError;
  return refused(why, s.code() == Errc::kBadMac ? protocol::sw::kMacInvalid : 0,
                 std::string(step) + ": " + s.to_string());
}

}  // namespace citycard::devices
