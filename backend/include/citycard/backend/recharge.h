// Recharge (充值) and the purse load protocol (圈存), through every channel: the service
// counter (cash), a merchant's POS within its recharge quota, online banking through the bank
// gateway, a phone over the air (the same gateway), telecom vouchers, a named card's online
// account; and two internal ones: rebate instalments and points redeemed into the card.
//
// An order, identified by the caller's order id, goes through
//   CREATED    (online payment asked of the bank, no answer yet)
//   PAID       the money is ours and owed to the card: Dr <source> / Cr pending_loads. This is
//              a pending load (补登): the card collects it at any load terminal or phone later;
//   AUTHORIZED the card asked to load it (INITIALIZE FOR LOAD; MAC1 checked), we issued MAC2
//              for one online counter; in doubt until the card's TAC comes back;
//   LOADED     TAC verified: Dr pending_loads / Cr card_float; the card's believed balance
//              grows. Final;
//   REVERSED   a paid order refunded to its source (cash back, quota restored, bank refund,
//              voucher reinstated, account re-credited). Final;
//   FAILED     the payment never happened (declined, no answer). Final; no money moved.
// Orders to an online account (bank/phone top-ups) go CREATED -> LOADED: Dr cash:issuer /
// Cr online_accounts.
//
// Sources by channel: counter: cash:issuer; merchant POS: recharge_quota (the merchant's
// prepaid quota; kInsufficientFunds when exhausted); bank, phone: cash:issuer once the bank
// approves; voucher: receivable:vouchers (the telecom pays later, settle_vouchers()); online
// account: online_accounts; rebate: rebates_owed; points: points_liability.
//
// Idempotency: every order id is unique forever. Creating an order again with the same
// parameters returns the order as it stands (the first result, advanced by whatever happened
// since); with other parameters it is kConflict and nothing changes. authorize_load() repeated
// with the same card answer returns the same MAC2 and date-time; confirm_load() repeated with
// the same TAC returns the same confirmation (duplicate set); with another TAC, kConflict.
//
// In doubt: only one order of a card is AUTHORIZED at a time. The card's online counter
// settles a doubt: when the card next answers INITIALIZE FOR LOAD (for any order), a counter
// equal to the authorized one means the credit never happened (the order is PAID again, a
// pending load); a counter past it means it did (LOADED, without a TAC: tac_verified false).
// A counter that jumps past what we know of raises a risk finding. abort_load() is the
// terminal saying the card refused MAC2: the order is PAID again, and reversed at once for
// counter and POS orders (the customer stands there, money in hand). A PAID order whose load
// was aborted stays in doubt the same way until the card answers again: if the card took the
// credit after all it becomes LOADED (and a finding says so), and until then it cannot be
// reversed.
//
// Checks that refuse an order or load (nothing changes; the refusal is audited): the card is
// unknown (kNotFound), not active or expired (kRejected), would exceed max_balance_fen
// (kRejected); MAC1 does not verify (kBadMac); a TAC that does not verify (kBadMac, and a
// risk finding: a forged or corrupted confirmation); recharge risk rules (kRejected).
//
// Rebates (充值返利): a rule "recharge at least X, get R back in N instalments every M months"
// applies to a card order when it is LOADED: Dr expense:marketing / Cr rebates_owed for R, and
// N instalments (R / N each, the remainder in the first) fall due M, 2M, ... months after the
// load day; poll() releases the due ones as REBATE orders (Dr rebates_owed / Cr
// pending_loads) that the card collects like any pending load. One rule per order: the one
// that gives the most.
//
// Bank: poll() collects the gateway's callbacks (duplicates and callbacks for orders already
// decided change nothing; a callback that contradicts what we decided, or names an order we do
// not have, is recorded and raises a finding), queries orders that waited longer than
// bank_timeout_us, and after bank_queries_max unanswered queries gives up (FAILED). A late
// approval of a payment we gave up on is refunded through the gateway.
//
// Threads: one caller at a time (the Backend's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "citycard/backend/bank.h"
#include "citycard/backend/calendar.h"
#include "citycard/backend/cards.h"
#include "citycard/backend/issuance.h"
#include "citycard/backend/keys.h"
#include "citycard/backend/ledger.h"
#include "citycard/backend/merchants.h"
#include "citycard/backend/notify.h"
#include "citycard/backend/risk.h"
#include "citycard/backend/store.h"
#include "citycard/backend/users.h"
#include "citycard/protocol/load.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"

namespace citycard::backend {

enum class Channel : std::uint8_t {
  kCounter = 0,
  kMerchantPos = 1,
  kBank = 2,
  kVoucher = 3,
  kPhone = 4,
  kOnlineAccount = 5,
  kRebate = 6,  // internal
  kPoints = 7,  // internal
};
const char* channel_name(Channel c);

enum class OrderState : std::uint8_t {
  kCreated = 0,
  kPaid = 1,
  kAuthorized = 2,
  kLoaded = 3,
  kReversed = 4,
  kFailed = 5,
};
const char* order_state_name(OrderState s);

struct OrderRequest {
  std::string order_id;  // 1..64 printable ASCII; the idempotency key
  Channel channel = Channel::kCounter;
  protocol::Serial8 card{};  // the card loaded, or (to_account) whose holder's account
  bool to_account = false;   // bank/phone only: top up the holder's online account
  std::int64_t amount_fen = 0;
  std::string merchant_id;   // merchant POS: whose quota
  std::string voucher_code;  // voucher: the code (its face value must equal amount_fen)
};

struct Order {
  std::string order_id;
  Channel channel = Channel::kCounter;
  protocol::Serial8 card{};
  bool to_account = false;
  std::int64_t amount_fen = 0;
  std::string merchant_id;
  OrderState state = OrderState::kCreated;
  std::string failure;  // why FAILED or REVERSED
  int created_date = 0;
  std::optional<int> paid_date;
  std::optional<int> done_date;  // LOADED, REVERSED or FAILED
  std::string bank_ref;
  bool tac_verified = false;
};

// What a load terminal sends: the order and the card's INITIALIZE FOR LOAD answer.
struct LoadAuthRequest {
  std::string order_id;
  protocol::Serial8 card{};
  std::uint8_t key_version = 0;
  protocol::load::LoadInit init;  // amount, type and terminal as the card was asked
};

struct LoadAuthorization {
  std::string order_id;
  protocol::Mac4 mac2{};
  protocol::DateTime7 datetime{};  // for CREDIT FOR LOAD: date(4) time(3)
  std::int64_t amount_fen = 0;
};

struct LoadConfirmation {
  std::string order_id;
  std::int64_t balance_after_fen = 0;  // as the card reports it (before + amount)
  bool duplicate = false;              // this TAC was confirmed before
};

struct RebateRule {
  std::int64_t id = 0;
  std::string name;
  std::int64_t min_recharge_fen = 0;
  std::int64_t rebate_fen = 0;
  int installments = 1;
  int interval_months = 1;
  bool enabled = true;
};

struct Voucher {
  std::string code;
  std::int64_t face_fen = 0;
};

struct RechargePoll {
  std::int64_t callbacks = 0;          // processed
  std::int64_t callbacks_ignored = 0;  // duplicates, late, unknown, contradicting
  std::int64_t queried = 0;
  std::int64_t failed = 0;  // given up or declined
  std::int64_t rebates_released = 0;
  std::int64_t errors = 0;  // orders or instalments that could not be processed (audited)
};

struct RechargeOptions {
  std::int64_t max_balance_fen = 100'000;  // a card's purse limit after a load
  std::int64_t max_order_fen = 100'000;
  std::int64_t voucher_face_max_fen = 50'000;
  std::int64_t bank_timeout_us = 60'000'000;
  int bank_queries_max = 5;
  std::size_t pending_list_max = 32;    // pending loads returned for one card
  std::size_t poll_batch_max = 10'000;  // orders, callbacks and rebates per poll()
  std::size_t rebate_rules_max = 100;
  std::size_t voucher_import_max = 100'000;
};

class Recharge {
 public:
  Recharge(Store& store, Ledger& ledger, Keys& keys, Issuance& issuance, Cards& cards,
           Merchants& merchants, Risk& risk, Notifier& notifier, Users& users, BankGateway& bank,
           const Calendar& calendar, RechargeOptions options = {})
      : store_(store),
        ledger_(ledger),
        keys_(keys),
        issuance_(issuance),
        cards_(cards),
        merchants_(merchants),
        risk_(risk),
        notifier_(notifier),
        users_(users),
        bank_(bank),
        calendar_(calendar),
        options_(options) {}

  // Staff: any channel but the internal ones, for a customer at the desk; merchant users:
  // merchant POS orders of their own merchant.
  Result<Order> create_order(const Session& by, const OrderRequest& request);
  // A cardholder's own order through the web platform or phone app, or a terminal's
  // (`actor` is audited): bank, phone, voucher and online account only — and counter or POS
  // when `terminal_merchant` names a desk or a recharging retail merchant (the terminal's).
  Result<Order> create_customer_order(const std::string& actor, const OrderRequest& request,
                                      const std::string& terminal_merchant = "");
  // Merchant users (own merchant) or staff: points into the card as a pending load.
  Result<Order> redeem_points(const Session& by, const std::string& merchant_id,
                              const std::string& order_id, const protocol::Serial8& card,
                              std::int64_t points);

  Result<Order> order(const std::string& order_id) const;
  // PAID orders waiting for the card, oldest first, at most pending_list_max.
  Result<std::vector<Order>> pending_loads(const protocol::Serial8& card) const;

  // The load protocol; `actor` is audited ("terminal:<id>" over the wire).
  Result<LoadAuthorization> authorize_load(const std::string& actor, const LoadAuthRequest& r);
  Result<LoadConfirmation> confirm_load(const std::string& actor, const std::string& order_id,
                                        const protocol::Mac4& tac);
  Result<Order> abort_load(const std::string& actor, const std::string& order_id,
                           const std::string& reason);

  // Staff (any), merchant users (their own POS orders): a PAID order back to its source.
  Result<Order> reverse(const Session& by, const std::string& order_id, const std::string& reason);

  // One callback from the gateway (poll() calls this; tests call it with crafted ones).
  Status on_bank_callback(const BankCallback& callback);
  Result<RechargePoll> poll();

  // Vouchers (admin, finance): imported from a telecom; the telecom pays what was redeemed.
  Status import_vouchers(const Session& by, const std::string& issuer,
                         const std::vector<Voucher>& vouchers);
  Result<std::int64_t> settle_vouchers(const Session& by, const std::string& issuer);

  // Rebate rules (admin).
  Result<std::int64_t> add_rebate_rule(const Session& by, const RebateRule& rule);
  Status set_rebate_rule_enabled(const Session& by, std::int64_t id, bool enabled);

  // For conservation: what the ledger accounts must mirror.
  Result<std::int64_t> pending_sum_fen() const;        // PAID + AUTHORIZED card orders
  Result<std::int64_t> rebates_owed_sum_fen() const;   // instalments not released
  Result<std::int64_t> rebates_given_sum_fen() const;  // all not forfeited
  Result<std::int64_t> voucher_receivable_sum_fen() const;

  const RechargeOptions& options() const { return options_; }

 private:
  struct Context;
  Result<Order> place(const Context& ctx, const OrderRequest& r);
  Status pay(const Context& ctx, const OrderRequest& r, Order& o);
  Status post(const std::string& kind, const std::string& ref, std::string_view debit,
              std::string_view credit, std::int64_t amount_fen);
  Status set_state(const std::string& order_id, OrderState state, const std::string& failure);
  Status mark_loaded(const Order& o, bool tac_verified, const protocol::Mac4* tac);
  // `finding` is set when the card shows that an aborted load happened after all.
  Status settle_doubt(const protocol::Serial8& card, std::uint16_t counter,
                      const std::string& asking_order, std::string& finding);
  Status refund_to_source(const Order& o, const std::string& reason);
  Status bank_decided(const Order& o, bool approved, const std::string& bank_ref,
                      const std::string& reason);
  Status schedule_rebate(const Order& o);
  Result<std::int64_t> release_rebates(std::int64_t& errors);
  Result<protocol::crypto::Key16> card_key(const CardRecord& card, bool load_key) const;
  Status check_card_for_load(const CardInfo& c, std::int64_t amount_fen) const;

  // A recharge refused by a risk rule: its event is written after the rollback.
  struct Refusal {
    std::string merchant_id;
    protocol::Serial8 card{};
    std::string order_id;
    std::int64_t amount_fen = 0;
    std::string reason;
  };
  template <class R>
  R keep_refusal(R result);

  Store& store_;
  Ledger& ledger_;
  Keys& keys_;
  Issuance& issuance_;
  Cards& cards_;
  Merchants& merchants_;
  Risk& risk_;
  Notifier& notifier_;
  Users& users_;
  BankGateway& bank_;
  const Calendar& calendar_;
  RechargeOptions options_;
  std::optional<Refusal> refusal_;
};

}  // namespace citycard::backend
