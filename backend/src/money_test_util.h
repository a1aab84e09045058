// Test support for the money side: a backend with users of every role, merchants, and a card
// that answers the load protocol the way a purse does (INITIALIZE FOR LOAD, CREDIT FOR LOAD),
// computed with protocol's crypto primitives on the card's own keys.
#pragma once

#include <cstdint>
#include <string>

#include "citycard/backend/backend.h"
#include "test_city.h"

namespace citycard::backend::testing {

// The load side of a card: its DLK/DTK come from the CardImage issuance returned.
struct PurseCard {
  TestCard card;
  std::uint16_t online_counter = 0;
  protocol::Serial8 serial() const { return card.image.serial; }

  // The card's answer to INITIALIZE FOR LOAD.
  LoadAuthRequest init(const std::string& order_id, std::int64_t amount_fen,
                       const protocol::TerminalId& terminal,
                       std::uint32_t random = 0x12345678) const;
  // CREDIT FOR LOAD: checks MAC2 as a card does (kBadMac when it does not verify), credits
  // the purse, moves the online counter and answers the TAC.
  Result<protocol::Mac4> credit(const LoadAuthRequest& init, const LoadAuthorization& auth);
};

class MoneyTest : public BackendTest {
 protected:
  void SetUp() override;
  // Reopens a new in-memory backend with the current `options` and sets it up as SetUp does.
  void fresh();
  void init();
  // Sessions: admin "root", finance "fin1" and "fin2".
  Session login(const std::string& user, const std::string& password = "password-1");
  Session add_user(const std::string& user, Role role, const std::string& merchant = "");
  void add_merchant(const MerchantParams& p);
  MerchantParams merchant(const std::string& id, MerchantKind kind = MerchantKind::kRetail,
                          SettlementCycle cycle = SettlementCycle::kDaily);
  // A card issued at the desk; named when `holder` is set.
  PurseCard issue_card(std::int64_t balance_fen, std::int64_t deposit_fen = 0, bool named = false,
                       protocol::CardType type = protocol::CardType::kAdult);
  // A terminal registered for merchant `merchant_id`.
  TestTerminal terminal(const std::string& merchant_id, const std::string& route = "");
  // Counter order + authorize + credit + confirm; asserts every step.
  void counter_load(PurseCard& c, const std::string& order_id, std::int64_t amount_fen);
  // Loads an existing PAID order onto the card through a load terminal.
  Result<LoadConfirmation> load(PurseCard& c, const std::string& order_id, std::int64_t amount_fen);
  std::int64_t ledger(std::string_view account) const { return balance(account); }
  std::int64_t posting_count() const { return *backend->ledger().posting_count(); }
  void next_day() { clock.advance_us(86'400'000'000LL); }
  void advance_s(std::int64_t s) { clock.advance_us(s * 1'000'000); }

  Session admin, fin1, fin2;
  protocol::TerminalId load_terminal{};  // a desk terminal for loads
};

}  // namespace citycard::backend::testing
