// The purchase transaction every terminal runs: a card in the field, a PSAM in the slot.
//
//   card  00A4 SELECT the JT/T 978 application (then CJ/T 166's, when accepted and the card
//              has no JT/T 978 one)
//   card  00B0 READ BINARY 0x15 (card application serial, diversification data, validity)
//   card  805A GET TRANSACTION PROVE   -- only when this card has a grey record here
//   card  8050 INITIALIZE FOR PURCHASE (P1 01), or FOR CAPP PURCHASE (P1 03)
//   PSAM  00A4 SELECT the family's DF  -- only when it is not the one selected
//   PSAM  8070 MAC1
//   card  80DC UPDATE CAPP DATA CACHE  -- composite purchases: each record, in order
//   card  8054 DEBIT FOR PURCHASE (MAC1 in, TAC and MAC2 out)
//   PSAM  8072 verify MAC2
//
// A card outside the validity dates of its file 0x15 is refused before INITIALIZE. A card the
// terminal's blacklist names is locked (blacklist_lock.h) and refused.
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
// Every result carries the tap's duration: the simulated time of its card and PSAM exchanges
// (CardLink::elapsed_us), card activation included.
//
// Not thread-safe. Does not own the SAM client or the card link.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
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
  kCardExpired,          // outside the validity dates of file 0x15
  kBlacklisted,          // on the terminal's blacklist: locked now (APPLICATION BLOCK)
  kHostRefused,          // the load host did not authorise (bad MAC1, unknown key, rule)
};
inline constexpr std::size_t kRefusalCount = 11;
const char* refusal_name(Refusal refusal);

// One record a composite purchase writes with UPDATE CAPP DATA CACHE.
struct CappUpdate {
  std::uint8_t sfi = protocol::sfi::kTravel;  // 0x1E (48 bytes) or 0x1A (128 bytes)
  std::uint8_t record_id = 0;                 // P1: 00 for 0x1E, the record id for 0x1A
  Bytes record;
};

struct PurchaseRequest {
  std::uint32_t amount_fen = 0;
  protocol::DateTime7 datetime{};  // the terminal's calendar time, as the card records it
  // Composite purchase: the records to write before the DEBIT, in order (a bus: the 0x1E
  // travel record; a metro gate: 0x1A, then 0x1E). Empty: a simple purchase (type 06).
  std::vector<CappUpdate> capp_updates;
};

// A completed purchase: what a clearing record needs from the card and the PSAM.
struct Purchase {
  protocol::Serial8 card_serial{};
  std::uint16_t card_counter = 0;  // offline counter the debit used
  std::uint32_t balance_before_fen = 0;
  std::uint32_t amount_fen = 0;
  std::uint8_t type = protocol::txn::kPurchase;  // 06, or 09 for a composite purchase
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
  std::int64_t duration_us = 0;    // simulated card + PSAM time of this tap

  bool ok() const { return !refusal.has_value(); }
};

struct GreyCounters {
  std::uint64_t recorded = 0;    // DEBITs that got no answer
  std::uint64_t completed = 0;   // the card had been debited: completed on a later tap
  std::uint64_t cleared = 0;     // the card had not been debited
  std::uint64_t unresolved = 0;  // dropped without knowing (card used elsewhere, or evicted)
};

struct PurchaseOptions {
  bool accept_jtt978 = true;
  bool accept_cjt166 = true;
  bool check_validity = true;  // refuse cards outside their validity dates (kCardExpired)
  // CJ/T 166 cards: the 8070 diversification data is city code | FF 00 00 00 00 00
  // (STANDARDS.md). Where the 2-byte city code sits in file 0x15 is NOT confirmed; our
  // reading: right after the 2-byte issuer code, offset 2.
  std::size_t cjt166_city_code_offset = 2;
  // Blacklisted cards are locked temporarily (APPLICATION BLOCK P2 00, which an issuer can
  // undo) unless this says permanently (P2 01).
  bool blacklist_lock_permanent = false;
};

class PurchaseEngine {
 public:
  static constexpr std::size_t kGreyRecordsMax = 16;
  using Blacklist = std::function<bool(const protocol::Serial8&)>;

  explicit PurchaseEngine(SamClient& sam, PurchaseOptions options = {})
      : sam_(sam), options_(options) {}

  // Signs on to the PSAM (terminal id, DF select). purchase() calls it when not yet open.
  Status open();
  bool is_open() const { return terminal_.has_value(); }
  // Valid once open.
  const protocol::TerminalId& terminal_id() const { return *terminal_; }
  // Cards for which `listed` is true are locked and refused. Empty: no blacklist.
  void set_blacklist(Blacklist listed) { blacklist_ = std::move(listed); }

  PurchaseResult purchase(CardLink& card, const PurchaseRequest& request);

  std::size_t grey_records() const { return grey_.size(); }
  const GreyCounters& grey_counters() const { return grey_counters_; }
  const PurchaseOptions& options() const { return options_; }

 private:
  PurchaseResult run(CardLink& card, const PurchaseRequest& request);
  // Runs GET TRANSACTION PROVE for a grey record: a result when the tap ends there
  // (completed, or torn again), nothing when the purchase should go ahead.
  std::optional<PurchaseResult> recover(CardLink& card, std::size_t grey_index);
  void keep_grey(const Purchase& grey);
  void resolve_grey(const protocol::Serial8& serial, std::uint16_t card_counter_now);
  Status select_sam_application(protocol::Family family);
  PurchaseResult lock_blacklisted(CardLink& card, const protocol::Serial8& serial);

  SamClient& sam_;
  PurchaseOptions options_;
  Blacklist blacklist_;
  std::optional<protocol::TerminalId> terminal_;
  protocol::Family sam_family_ = protocol::Family::kJtt978;  // DF selected on the PSAM
  std::vector<Purchase> grey_;  // at most kGreyRecordsMax, oldest first; TAC not yet known
  GreyCounters grey_counters_;
};

// What every terminal does first with a card: SELECT its application (JT/T 978 first, then
// CJ/T 166, as `accept_*` allow) and READ BINARY its file 0x15. Shared by the purchase and load
// engines. The refusal, when there is one, says why.
struct CardIdentity {
  protocol::Family family = protocol::Family::kJtt978;
  protocol::Serial8 serial{};
  std::array<std::uint8_t, 8> diversification_data{};
  std::array<std::uint8_t, 4> valid_from{};
  std::array<std::uint8_t, 4> valid_to{};
};
Result<CardIdentity> identify_card(CardLink& card, bool accept_jtt978, bool accept_cjt166,
                                   std::size_t cjt166_city_code_offset, PurchaseResult* refusal);
// Whether the date of `datetime` lies within [valid_from, valid_to] (BCD compares as dates).
bool within_validity(const CardIdentity& card, const protocol::DateTime7& datetime);

}  // namespace citycard::devices
