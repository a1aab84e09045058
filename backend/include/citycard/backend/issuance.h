// Issuance: personalises cards and registers terminals (PSAMs), and is where the backend
// looks them up.
//
// Contract:
// - issue_card() allocates a unique serial and card number, derives the card's keys from the
//   current key version, stores the card and posts its money in one transaction:
//   Dr cash:issuer / Cr card_float for the opening balance, Dr cash:issuer / Cr deposits for the
//   deposit. The returned CardImage is what a personalisation machine writes into the card;
//   the backend keeps no copy of the card keys (it re-derives them).
// - register_terminal() stores the terminal and returns its PsamImage: purchase master =
//   the issuer MPK of the current version, batch key = terminal_batch_key(batch master, id).
//   It opens payable:<operator_id> in the ledger.
// - Serials are BCD of the 16-digit card number: city code (4 digits) then a 12-digit
//   sequence; allocated terminal ids are BCD of city code then an 8-digit sequence. Our
//   reading, not a standard's; both are unique per database.
// - Unknown serials and terminal ids are kNotFound.
//
// Threads: one caller at a time (the Backend's).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "citycard/backend/calendar.h"
#include "citycard/backend/keys.h"
#include "citycard/backend/ledger.h"
#include "citycard/backend/store.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/status.h"

namespace citycard::backend {

// Every status but kActive puts the card on the blacklist (cards.h keeps the two in step).
enum class CardStatus : std::uint8_t {
  kActive = 0,
  kBlocked = 1,    // blocked by an operator (fraud confirmed)
  kCancelled = 2,  // issue cancelled (撤销发卡): money returned, card wiped
  kLost = 3,       // reported lost (挂失), named cards only; may be found again
  kFrozen = 4,     // frozen by an operator (冻结); unfreeze makes it active again
  kRefunded = 5,   // returned (退卡): balance and deposit paid back
  kReplaced = 6,   // replaced (换卡): balance and deposit moved to the new card
};
const char* card_status_name(CardStatus s);

struct IssuanceOptions {
  std::string city_code = "3100";  // 4 digits; prefixes card numbers and terminal ids
  // Limits: many cities cap an anonymous card at 1,000 yuan.
  std::int64_t max_balance_fen = 100'000;
  std::int64_t max_deposit_fen = 10'000;
  std::uint32_t max_overdraft_fen = 10'000;
  int validity_years = 5;           // when CardParams gives no validity
  std::size_t max_text_bytes = 64;  // operator id, route, vehicle, device id
};

// kInvalidArgument naming the first bad option (city code not 4 digits, negative limits...).
Status validate_options(const IssuanceOptions& options);

struct CardParams {
  protocol::CardType card_type = protocol::CardType::kAdult;
  protocol::Family family = protocol::Family::kJtt978;
  protocol::crypto::Algorithm algorithm = protocol::crypto::Algorithm::kTripleDes;
  std::int64_t opening_balance_fen = 0;
  std::int64_t deposit_fen = 0;
  std::uint32_t overdraft_limit_fen = 0;
  // BCD YYYYMMDD; when absent: from today for IssuanceOptions::validity_years.
  std::optional<std::array<std::uint8_t, 4>> valid_from;
  std::optional<std::array<std::uint8_t, 4>> valid_to;
};

// What the backend knows of a card.
struct CardRecord {
  protocol::Serial8 serial{};
  std::string card_number;
  protocol::Family family = protocol::Family::kJtt978;
  protocol::CardType card_type = protocol::CardType::kAdult;
  CardStatus status = CardStatus::kActive;
  std::uint8_t key_version = 0;
  protocol::crypto::Algorithm algorithm = protocol::crypto::Algorithm::kTripleDes;
  std::int64_t balance_fen = 0;               // believed: opening minus cleared purchases
  std::optional<std::uint16_t> last_counter;  // highest offline counter cleared
  std::int64_t deposit_fen = 0;
  std::uint32_t overdraft_limit_fen = 0;
  int valid_from_yyyymmdd = 0;
  int valid_to_yyyymmdd = 0;
  bool operator==(const CardRecord&) const = default;
};

struct TerminalParams {
  std::optional<protocol::TerminalId> terminal_id;  // allocated when absent
  std::string operator_id;                          // required: who gets paid
  std::string route;
  std::string vehicle;
  std::string device_id;
};

struct TerminalRecord {
  protocol::TerminalId terminal_id{};
  std::string operator_id;
  std::string route;
  std::string vehicle;
  std::string device_id;
  std::uint8_t key_version = 0;
  bool operator==(const TerminalRecord&) const = default;
};

class Issuance {
 public:
  Issuance(Store& store, Ledger& ledger, Keys& keys, const Calendar& calendar,
           IssuanceOptions options);

  Result<protocol::CardImage> issue_card(const CardParams& params);
  // kDuplicate when the terminal id is taken.
  Result<protocol::PsamImage> register_terminal(const TerminalParams& params);

  Result<CardRecord> card(const protocol::Serial8& serial) const;
  Result<TerminalRecord> terminal(const protocol::TerminalId& terminal_id) const;
  // At most `max_count`, by serial / terminal id.
  Result<std::vector<CardRecord>> list_cards(std::size_t max_count) const;
  Result<std::vector<TerminalRecord>> list_terminals(std::size_t max_count) const;
  Result<std::int64_t> card_count() const;
  // Sum of believed card balances: what card_float must owe (conservation).
  Result<std::int64_t> card_balance_sum_fen() const;
  // Sum of card deposits: what the deposits account must owe.
  Result<std::int64_t> card_deposit_sum_fen() const;

  const IssuanceOptions& options() const { return options_; }

 private:
  Result<std::uint64_t> next_sequence(const char* name);
  Result<bool> terminal_exists(const protocol::TerminalId& id) const;

  Store& store_;
  Ledger& ledger_;
  Keys& keys_;
  const Calendar& calendar_;
  IssuanceOptions options_;
};

}  // namespace citycard::backend
