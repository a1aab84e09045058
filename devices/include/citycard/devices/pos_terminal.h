// A merchant POS (device side): purchase with the cardholder's PIN, the merchant's discount,
// balance query, a journal with reprint, void and refund under the manager password, recovery
// of a purchase whose answer was lost, and end-of-day settlement with totals.
//
// - Purchase: read the card (sale core), VERIFY the PIN on the card (00 20; 63Cx wrong PIN,
//   6983 PIN blocked -> kWrongPin, no debit), then the purchase of the discounted amount
//   (half a fen of discount rounded up, in the cardholder's favour, as the backend's price():
//   fare_policy.h). The record's fare_full_fen is the undiscounted price.
// - Answer lost (card pulled at the DEBIT): the engine keeps a grey record and the POS marks
//   the sale uncertain. The cashier presents the card again with the same amount: if the card
//   had been debited the engine completes the old sale from the card's proof (no second
//   debit), otherwise it charges now. Either way the customer pays exactly once; this is the
//   device side of "reversal".
// - Void (same batch) and refund go to the backend (PosRefundRequest, backend/pos_refund.h):
//   a credit back to the card's purse would need the load key, which only the issuer's host
//   holds (load.h), so the backend gives the money back to the holder's online account from
//   the merchant's payable, under the manager's authority (PosConfig::manager and the password
//   the cashier types; the backend checks them). The POS first uploads its queued records (the
//   backend refunds only a sale it has), then sends the request and journals the void or
//   refund only when the backend accepted it. The refund id is the sale's card serial and
//   counter and the refund's ordinal ("<serial hex>-<counter>-R1", "-V1" for a void), so a
//   request whose answer was lost, asked again with the same amount, is answered once
//   (duplicate) and never pays twice. Refusals (Status): kPermissionDenied (not authorised),
//   kRejected (over the sale, unknown sale, wrong merchant, void not allowed, anonymous card:
//   last_refund_code() says which), kConflict, kTimeout / kUnavailable (nothing journalled;
//   ask again).
// - Settlement: totals per kind (count, amount) of the current batch, then a new batch; the
//   sale records themselves go up through the durable queue (upload()).
// - PIN change: CHANGE PIN (80 5E 01 00, old FF new) after the old PIN; the card counts a wrong
//   old PIN as a wrong try (63Cx).
// - Pre-authorisation and completion (预授权 / 预授权完成): an offline purse cannot reserve money
//   on the card, so the POS holds the authorisation: pre_authorise() checks the PIN and that
//   the balance covers the amount, and journals it (no money moves); complete() charges the
//   final amount (at most the authorised one, same card, within preauth_valid_s, once) as a
//   purchase; cancel_pre_authorisation() needs the manager password. A card whose balance fell
//   below the final amount in between is refused at completion (kInsufficientBalance).
// - Recharge within the merchant's quota: recharge() runs a RechargePoint (online_load.h) on
//   CHANNEL_MERCHANT_POS; the backend refuses it when the quota is exhausted
//   (kInsufficientFunds) and nothing is loaded.
// - Statistics: lifetime counts and amounts per kind, refusals by reason, average ticket.
//
// Single-threaded. Does not own the PSAM, clock, channel or storage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "citycard/devices/online_load.h"
#include "citycard/devices/sale_core.h"

namespace citycard::devices {

struct PosConfig {
  SaleCoreOptions core;
  std::string merchant_id;
  std::uint32_t discount_bp = 0;  // the merchant's discount
  std::string manager_password;   // cancelling a pre-authorisation (local; no money moves)
  std::string manager;            // void and refund: the manager's user name at the backend
  // Makes the channel progress one step (the event loop); void and refund wait on it.
  std::function<void()> pump;
  std::size_t pump_rounds_max = 10'000;  // per request: then kTimeout
  int upload_attempts_max = 3;           // before a refund: uploads of the queued sales
  bool require_pin = true;
  std::size_t journal_max = 1000;             // oldest entries drop off (they are uploaded already)
  std::int64_t preauth_valid_s = 7 * 86'400;  // a pre-authorisation lapses after this
};

struct JournalEntry {
  enum class Kind : std::uint8_t { kPurchase, kVoid, kRefund, kPreAuth, kCompletion, kRecharge };
  std::uint64_t no = 0;  // per terminal, from 1
  Kind kind = Kind::kPurchase;
  std::uint64_t settlement_batch = 0;
  std::uint32_t amount_fen = 0;  // charged (purchase) or to give back (void, refund)
  std::uint32_t full_fen = 0;    // before the merchant discount
  std::uint64_t refers_to = 0;   // void / refund: the purchase's number
  bool voided = false;           // purchase: a void has been recorded
  std::uint32_t refunded_fen = 0;
  std::uint32_t refunds_done = 0;      // purchase: refunds the backend accepted (the next id's n)
  citycard::wire::SwipeRecord record;  // purchase, completion: its clearing record
  // Pre-authorisation: the card, when it was made, and whether completed or cancelled.
  protocol::Serial8 card{};
  std::int64_t at_epoch2000_s = 0;
  bool closed = false;
  std::string order_id;  // recharge
};

struct SettlementTotals {
  std::uint64_t batch = 0;
  std::uint64_t purchases = 0;
  std::int64_t purchase_fen = 0;
  std::uint64_t voids = 0;
  std::int64_t void_fen = 0;
  std::uint64_t refunds = 0;
  std::int64_t refund_fen = 0;
  std::uint64_t completions = 0;  // pre-authorisation completions (also sales)
  std::int64_t completion_fen = 0;
  std::uint64_t recharges = 0;  // money into cards: not part of net sales
  std::int64_t recharge_fen = 0;
  std::int64_t net_fen() const { return purchase_fen + completion_fen - void_fen - refund_fen; }
  bool operator==(const SettlementTotals&) const = default;
};

struct PosStatistics {
  SettlementTotals lifetime;  // every entry still in the journal, all batches
  std::uint64_t pre_authorisations = 0;
  std::uint64_t pre_authorisations_open = 0;
  std::uint64_t wrong_pins = 0;  // purchase, pre-authorisation and PIN change refusals
  std::uint64_t pin_changes = 0;
  std::uint64_t recharges_refused = 0;
  std::int64_t average_ticket_fen = 0;  // (purchases + completions) amount / count, rounded down
  SaleCounters sale;                    // the sale core's: taps, sales, refusals by reason
};

class MerchantPos {
 public:
  MerchantPos(PosConfig config, Psam& psam, const sim::Clock& clock, sim::Channel& channel,
              LogStorage& storage);

  SaleResult purchase(CardLink& card, std::uint32_t price_fen, const std::string& pin);
  Result<std::uint32_t> balance(CardLink& card);
  // Void a purchase of the current batch, whole, at the backend. Errc::kRejected locally
  // (unknown or already voided, refunded, other batch) or by the backend (see above).
  Status void_sale(std::uint64_t journal_no, const std::string& password);
  // Refund part or all of a purchase (any batch still in the journal), at the backend.
  Status refund(std::uint64_t journal_no, std::uint32_t amount_fen, const std::string& password);
  // The backend's code of the last refused void or refund (OK when it was not the backend).
  citycard::wire::Code last_refund_code() const { return last_refund_code_; }
  // The receipt of a journal entry again, or nullopt when it has left the journal.
  std::optional<std::string> reprint(std::uint64_t journal_no) const;
  // End of day: the totals of the batch, then a new batch; uploads the queued records.
  SettlementTotals settle();
  SettlementTotals current_totals() const;

  // kRejected: wrong old PIN (tries left in the message) or PIN blocked; kInvalidArgument: a
  // PIN that is not 1..12 digits; kTorn: the card left.
  Status change_pin(CardLink& card, const std::string& old_pin, const std::string& new_pin);
  // The journal number of the authorisation; no money moves.
  Result<std::uint64_t> pre_authorise(CardLink& card, std::uint32_t amount_fen,
                                      const std::string& pin);
  SaleResult complete(CardLink& card, std::uint64_t preauth_no, std::uint32_t final_fen);
  Status cancel_pre_authorisation(std::uint64_t preauth_no, const std::string& password);
  // Recharge through `point` (set up on CHANNEL_MERCHANT_POS with this POS's terminal id).
  OnlineLoad recharge(CardLink& card, RechargePoint& point, const std::string& order_id,
                      std::uint32_t amount_fen);
  PosStatistics statistics() const;

  bool last_sale_uncertain() const { return uncertain_; }
  const std::deque<JournalEntry>& journal() const { return journal_; }
  const SaleCore& core() const { return core_; }
  SaleCore& core() { return core_; }

 private:
  JournalEntry* find(std::uint64_t no);
  const JournalEntry* find(std::uint64_t no) const;
  void add(JournalEntry e);
  Status verify_pin(CardLink& card, const std::string& pin, SaleResult* refusal);
  Status upload_sales();
  Result<citycard::wire::Envelope> call(citycard::wire::Envelope request);
  Status send_refund(JournalEntry& sale, bool is_void, std::uint32_t amount_fen,
                     const std::string& password);

  PosConfig config_;
  SaleCore core_;
  citycard::wire::SwipeRecord template_;
  std::deque<JournalEntry> journal_;
  Psam& psam_;
  sim::Channel& channel_;
  std::uint64_t next_request_id_ = 1;
  citycard::wire::Code last_refund_code_ = citycard::wire::OK;
  std::uint64_t next_no_ = 1;
  std::uint64_t batch_ = 1;
  bool uncertain_ = false;
  std::uint64_t wrong_pins_ = 0;
  std::uint64_t pin_changes_ = 0;
  std::uint64_t recharges_refused_ = 0;
};

std::string receipt_text(const JournalEntry& e, const std::string& merchant_id);

}  // namespace citycard::devices
