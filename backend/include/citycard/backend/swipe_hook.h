// The one place where ingest calls out to the money side's rules (risk.cpp): before an
// accepted purchase moves money, and after it has. Ingest owns the batch transaction; a hook
// runs inside it, so whatever the hook writes (alarm counters, risk events, points,
// notifications) commits or vanishes with the batch.
//
// Threads: called on the ingest thread, one record at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "citycard/backend/issuance.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"

namespace citycard::backend {

// One purchase that passed ingest's own checks (shape, TAC, replays).
struct SwipeFacts {
  const CardRecord& card;          // as the backend knew it before this purchase
  const TerminalRecord& terminal;  // the uploading terminal's registration
  std::int64_t amount_fen = 0;
  std::int64_t fare_full_fen = 0;
  protocol::DateTime7 datetime{};
  std::uint16_t card_counter = 0;
  std::string ref;  // "<serial hex>#<counter>"
};

struct SwipeCheck {
  bool reject = false;  // illegal: refuse the record (REJECTED), no money moves
  std::string reject_reason;
  std::vector<std::string> reasons;  // suspicious: accept, flag for an operator
};

class SwipeHook {
 public:
  virtual ~SwipeHook() = default;
  // Before the money moves. An error Status is an internal failure (the batch is refused).
  virtual Result<SwipeCheck> check_swipe(const SwipeFacts& swipe) = 0;
  // After the swipe is stored and posted; `swipe_id` is its row in swipes.
  virtual Status swipe_accepted(const SwipeFacts& swipe, std::int64_t swipe_id) = 0;
};

}  // namespace citycard::backend
