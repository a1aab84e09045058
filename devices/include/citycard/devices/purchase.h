// The purchase transaction every terminal runs: a card in the field, a PSAM in the slot.
//
//   card  00A4 SELECT the JT/T 978 application
//   card  00B0 READ BINARY 0x15 (card application serial, diversification data)
//   card  805A GET TRANSACTION PROVE   -- only when this card has a grey record here
//   card  8050 INITIALIZE FOR PURCHASE
//   PSAM  8070 MAC1
//   card  8054 DEBIT FOR PURCHASE (MAC1 in, TAC and MAC2 out)
//   PSAM  8072 verify MAC2
//
// Tearing (STANDARDS.md, 防拔): when the DEBIT gets no answer the card may or may not have been
// debited. The engine keeps a grey record of what it sent. On the card's next tap here it asks
// the card for the proof of that purchase; if the card has it (the debit happened) the
// purchase is completed from the grey record and its TAC, with no new debit, and reported as
// `recovered`. Otherwise the card's counter after INITIALIZE tells whether the debit did not
// happen (cleared) or the card has been used elsewhere since (unresolved: counted, dropped).
// Grey records are bounded; the oldest is dropped and counted as unresolved when full.
//
// A purchase is reported as done only when the PSAM has accepted the card's MAC2, or when it
// was recovered after a tear (then the backend's TAC check is what authenticates it).
//
// Not thread-safe. Does not own the SAM client or the card link.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "citycard/devices/card_link.h"
#include "citycard/devices/sam_client.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"

namespace citycard::devices {

// Why a tap did not end in a sale. Shared by every terminal.
enum class Refusal : std::uint8_t {
  kCardNotSupported,     // the card has no application we accept (SELECT 6A82)
  kCardBlocked,          // application blocked or blacklisted (6283, 6284, 9303)
  kInsufficientBalance,  // 9401 to INITIALIZE FOR PURCHASE
  kCardError,            // any other status word, or an answer of the wrong shape
  kTorn,                 // the card left the field mid-transaction
  kSamError,             // the PSAM refused, failed, or could not be signed on
  kMac2Invalid,          // the PSAM rejected the card's MAC2: not a genuine card
  kQueueFull,            // no room to keep the record: no sale until an upload frees room
};
inline constexpr std::size_t kRefusalCount = 8;
const char* refusal_name(Refusal refusal);

struct PurchaseRequest {
  std::uint32_t amount_fen = 0;
  protocol::DateTime7 datetime{};  // the terminal's calendar time, as the card records it
};

// A completed purchase: what a clearing record needs from the card and the PSAM.
struct Purchase {
  protocol::Serial8 card_serial{};
  std::uint16_t card_counter = 0;  // offline counter the debit used
  std::uint32_t balance_before_fen = 0;
  std::uint32_t amount_fen = 0;
  std::uint8_t type = protocol::txn::kPurchase;
  protocol::TerminalId terminal{};
  std::uint32_t terminal_seq = 0;
  protocol::DateTime7 datetime{};
  protocol::Mac4 tac{};
  std::uint8_t key_version = 0;
  std::uint8_t algorithm_id = 0;
  bool operator==(const Purchase&) const = default;
};

struct PurchaseResult {
  std::optional<Refusal> refusal;  // empty: the purchase is done
  std::uint16_t sw = 0;            // the status word behind a card or PSAM refusal, if any
  std::string detail;              // which step failed and how, for traces
  bool recovered = false;          // completes an earlier torn purchase; no new debit
  Purchase purchase;               // valid when ok()

  bool ok() const { return !refusal.has_value(); }
};

struct GreyCounters {
  std::uint64_t recorded = 0;    // DEBITs that got no answer
  std::uint64_t completed = 0;   // the card had been debited: completed on a later tap
  std::uint64_t cleared = 0;     // the card had not been debited
  std::uint64_t unresolved = 0;  // dropped without knowing (card used elsewhere, or evicted)
};

class PurchaseEngine {
 public:
  static constexpr std::size_t kGreyRecordsMax = 16;

  explicit PurchaseEngine(SamClient& sam) : sam_(sam) {}

  // Signs on to the PSAM (terminal id, DF select). purchase() calls it when not yet open.
  Status open();
  bool is_open() const { return terminal_.has_value(); }
  // Valid once open.
  const protocol::TerminalId& terminal_id() const { return *terminal_; }

  PurchaseResult purchase(CardLink& card, const PurchaseRequest& request);

  std::size_t grey_records() const { return grey_.size(); }
  const GreyCounters& grey_counters() const { return grey_counters_; }

 private:
  // Runs GET TRANSACTION PROVE for a grey record: a result when the tap ends there
  // (completed, or torn again), nothing when the purchase should go ahead.
  std::optional<PurchaseResult> recover(CardLink& card, std::size_t grey_index);
  void keep_grey(const Purchase& grey);
  void resolve_grey(const protocol::Serial8& serial, std::uint16_t card_counter_now);

  SamClient& sam_;
  std::optional<protocol::TerminalId> terminal_;
  std::vector<Purchase> grey_;  // at most kGreyRecordsMax, oldest first; TAC not yet known
  GreyCounters grey_counters_;
};

}  // namespace citycard::devices
