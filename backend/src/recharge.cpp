#include "citycard/backend/recharge.h"

#include <algorithm>

#include "citycard/backend/money.h"
#include "dates.h"
#include "sql_util.h"

namespace citycard::backend {

namespace crypto = protocol::crypto;
using protocol::Mac4;
using protocol::Serial8;

struct Recharge::Context {
  std::string actor;                 // audited as
  const Session* session = nullptr;  // a user, or null for customers and terminals
  std::string terminal_merchant;     // the merchant of the terminal that asked, if any
  bool internal = false;             // rebates and points
};

namespace {

constexpr std::size_t kOrderIdMax = 64;

constexpr const char* kOrderColumns =
    "SELECT order_id, channel, card_serial, to_account, amount_fen, merchant_id, state, "
    "failure, created_date, paid_date, done_date, bank_ref, tac_verified FROM recharge_orders ";

Order order_from_row(const Query& q) {
  Order o;
  o.order_id = q.column_text(0);
  o.channel = static_cast<Channel>(q.column_int64(1));
  if (!q.column_is_null(2)) (void)sql::copy_blob(q.column_blob(2), o.card);
  o.to_account = q.column_int64(3) != 0;
  o.amount_fen = q.column_int64(4);
  o.merchant_id = q.column_text(5);
  o.state = static_cast<OrderState>(q.column_int64(6));
  o.failure = q.column_text(7);
  o.created_date = static_cast<int>(q.column_int64(8));
  if (!q.column_is_null(9)) o.paid_date = static_cast<int>(q.column_int64(9));
  if (!q.column_is_null(10)) o.done_date = static_cast<int>(q.column_int64(10));
  o.bank_ref = q.column_text(11);
  o.tac_verified = q.column_int64(12) != 0;
  return o;
}

bool staff(const Session* s) {
  return s != nullptr && (s->role == Role::kAdmin || s->role == Role::kFinance);
}

bool online(Channel c) {
  return c == Channel::kBank || c == Channel::kPhone;
}

std::string fingerprint(const OrderRequest& r) {
  return std::to_string(static_cast<int>(r.channel)) + "|" + to_hex(r.card) + "|" +
         (r.to_account ? "account" : "card") + "|" + std::to_string(r.amount_fen) + "|" +
         r.merchant_id + "|" + r.voucher_code;
}

Status check_order_id(const std::string& id) {
  if (id.empty() || id.size() > kOrderIdMax) {
    return Status(Errc::kInvalidArgument,
                  "order id must be 1.." + std::to_string(kOrderIdMax) + " characters");
  }
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) {
      return Status(Errc::kInvalidArgument, "order id must be printable ASCII without spaces");
    }
  }
  return Status::ok();
}

}  // namespace

const char* channel_name(Channel c) {
  switch (c) {
    case Channel::kCounter:
      return "counter";
    case Channel::kMerchantPos:
      return "merchant_pos";
    case Channel::kBank:
      return "bank";
    case Channel::kVoucher:
      return "voucher";
    case Channel::kPhone:
      return "phone";
    case Channel::kOnlineAccount:
      return "online_account";
    case Channel::kRebate:
      return "rebate";
    case Channel::kPoints:
      return "points";
  }
  return "unknown";
}

const char* order_state_name(OrderState s) {
  switch (s) {
    case OrderState::kCreated:
      return "created";
    case OrderState::kPaid:
      return "paid";
    case OrderState::kAuthorized:
      return "authorized";
    case OrderState::kLoaded:
      return "loaded";
    case OrderState::kReversed:
      return "reversed";
    case OrderState::kFailed:
      return "failed";
  }
  return "unknown";
}

// ---- reading -------------------------------------------------------------------------------

Result<Order> Recharge::order(const std::string& order_id) const {
  auto q = store_.query(std::string(kOrderColumns) + "WHERE order_id = ?1");
  q.bind(1, order_id);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status(Errc::kNotFound, "no order " + order_id);
  return order_from_row(q);
}

Result<std::vector<Order>> Recharge::pending_loads(const Serial8& card) const {
  auto q = store_.query(std::string(kOrderColumns) +
                        "WHERE card_serial = ?1 AND state = 1 AND to_account = 0 "
                        "ORDER BY created_at_us, order_id LIMIT ?2");
  q.bind_blob(1, card).bind(2, static_cast<std::int64_t>(options_.pending_list_max));
  std::vector<Order> out;
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return out;
    out.push_back(order_from_row(q));
  }
}

Result<crypto::Key16> Recharge::card_key(const CardRecord& card, bool load_key) const {
  auto issuer = keys_.issuer(card.key_version);
  if (!issuer.is_ok()) return issuer.status();
  return crypto::diversify(card.algorithm, load_key ? issuer->load : issuer->tac, card.serial);
}

Status Recharge::check_card_for_load(const CardInfo& c, std::int64_t amount_fen) const {
  const std::string id = to_hex(c.card.serial);
  if (c.card.status != CardStatus::kActive) {
    return Status(Errc::kRejected,
                  "card " + id + " is " + card_status_name(c.card.status) + "; no loads");
  }
  if (c.card.valid_to_yyyymmdd < calendar_.today_yyyymmdd()) {
    return Status(Errc::kRejected,
                  "card " + id + " expired on " + std::to_string(c.card.valid_to_yyyymmdd));
  }
  if (c.card.balance_fen + amount_fen > options_.max_balance_fen) {
    return Status(Errc::kRejected,
                  "card " + id + " would hold " + std::to_string(c.card.balance_fen + amount_fen) +
                      " fen, over the limit of " + std::to_string(options_.max_balance_fen));
  }
  return Status::ok();
}

// ---- money helpers -------------------------------------------------------------------------

Status Recharge::post(const std::string& kind, const std::string& ref, std::string_view debit,
                      std::string_view credit, std::int64_t amount_fen) {
  return ledger_
      .post({kind, ref, {{std::string(debit), amount_fen}, {std::string(credit), -amount_fen}}})
      .status();
}

Status Recharge::set_state(const std::string& order_id, OrderState state,
                           const std::string& failure) {
  const bool final = state == OrderState::kLoaded || state == OrderState::kReversed ||
                     state == OrderState::kFailed;
  const int today = calendar_.today_yyyymmdd();
  return store_
      .query(
          "UPDATE recharge_orders SET state = ?2, failure = ?3, "
          "paid_date = CASE WHEN ?2 = 1 AND paid_date IS NULL THEN ?4 ELSE paid_date END, "
          "done_date = CASE WHEN ?5 <> 0 THEN ?4 ELSE done_date END WHERE order_id = ?1")
      .bind(1, order_id)
      .bind(2, static_cast<std::int64_t>(state))
      .bind(3, failure)
      .bind(4, std::int64_t{today})
      .bind(5, std::int64_t{final ? 1 : 0})
      .run();
}

// ---- placing orders ------------------------------------------------------------------------

template <class R>
R Recharge::keep_refusal(R result) {
  if (refusal_) {
    const Refusal f = *refusal_;
    refusal_.reset();
    (void)risk_.raise(f.merchant_id, f.card, f.order_id, f.amount_fen, f.reason, true);
  }
  return result;
}

Result<Order> Recharge::create_order(const Session& by, const OrderRequest& r) {
  return keep_refusal(users_.audited(by, "create_order", r.order_id, [&]() -> Result<Order> {
    if (Status s = users_.require(
            by, {Role::kAdmin, Role::kFinance, Role::kMerchantOwner, Role::kMerchantOperator},
            "create_order");
        !s.is_ok()) {
      return s;
    }
    Context ctx;
    ctx.actor = by.user;
    ctx.session = &by;
    return place(ctx, r);
  }));
}

Result<Order> Recharge::create_customer_order(const std::string& actor, const OrderRequest& r,
                                              const std::string& terminal_merchant) {
  return keep_refusal(users_.audited_as(actor, "create_order", r.order_id, [&]() -> Result<Order> {
    Context ctx;
    ctx.actor = actor;
    ctx.terminal_merchant = terminal_merchant;
    return place(ctx, r);
  }));
}

Result<Order> Recharge::redeem_points(const Session& by, const std::string& merchant_id,
                                      const std::string& order_id, const Serial8& card,
                                      std::int64_t points) {
  return users_.audited(by, "redeem_points_to_card", order_id, [&]() -> Result<Order> {
    if (Status s = users_.require_merchant(
            by, merchant_id,
            {Role::kAdmin, Role::kFinance, Role::kMerchantOwner, Role::kMerchantOperator},
            "redeem_points_to_card");
        !s.is_ok()) {
      return s;
    }
    Context ctx;
    ctx.actor = by.user;
    ctx.session = &by;
    ctx.internal = true;
    OrderRequest r;
    r.order_id = order_id;
    r.channel = Channel::kPoints;
    r.card = card;
    r.amount_fen = points * kPointValueFen;
    r.merchant_id = merchant_id;
    return place(ctx, r);
  });
}

Result<Order> Recharge::place(const Context& ctx, const OrderRequest& r) {
  if (Status s = check_order_id(r.order_id); !s.is_ok()) return s;
  if (r.channel > Channel::kPoints) return Status(Errc::kInvalidArgument, "unknown channel");
  if (r.amount_fen <= 0 || r.amount_fen > options_.max_order_fen) {
    return Status(Errc::kInvalidArgument,
                  "order amount must be 1.." + std::to_string(options_.max_order_fen) + " fen");
  }
  if (r.merchant_id.size() > 64 || r.voucher_code.size() > 64) {
    return Status(Errc::kInvalidArgument, "merchant id or voucher code too long");
  }
  // Idempotency first: a repeat is answered from what is stored.
  const std::string fp = fingerprint(r);
  {
    auto q = store_.query("SELECT fingerprint FROM recharge_orders WHERE order_id = ?1");
    q.bind(1, r.order_id);
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (*row) {
      if (q.column_text(0) != fp) {
        return Status(Errc::kConflict,
                      "order " + r.order_id + " exists with other parameters; nothing changed");
      }
      return order(r.order_id);
    }
  }

  // Who may use which channel.
  const bool internal_channel = r.channel == Channel::kRebate || r.channel == Channel::kPoints;
  if (internal_channel != ctx.internal) {
    return Status(Errc::kPermissionDenied,
                  std::string("channel ") + channel_name(r.channel) + " is not open to callers");
  }
  const Session* s = ctx.session;
  const bool merchant_user =
      s != nullptr && (s->role == Role::kMerchantOwner || s->role == Role::kMerchantOperator);
  if (r.channel == Channel::kCounter) {
    const MerchantParams* tm = merchants_.find(ctx.terminal_merchant);
    const bool desk_terminal = tm != nullptr && tm->kind == MerchantKind::kDesk;
    if (!staff(s) && !desk_terminal) {
      return Status(Errc::kPermissionDenied,
                    "counter recharge needs desk staff or a desk terminal");
    }
  } else if (r.channel == Channel::kMerchantPos) {
    const bool own = (merchant_user && s->merchant_id == r.merchant_id) ||
                     (!ctx.terminal_merchant.empty() && ctx.terminal_merchant == r.merchant_id);
    if (!staff(s) && !own) {
      return Status(Errc::kPermissionDenied,
                    "POS recharge for merchant " + r.merchant_id + " by " + ctx.actor +
                        ": only that merchant's users and terminals, or staff");
    }
    const MerchantParams* m = merchants_.find(r.merchant_id);
    if (m == nullptr) return Status(Errc::kNotFound, "no merchant " + r.merchant_id);
    if (!m->recharge_enabled) {
      return Status(Errc::kRejected, "merchant " + r.merchant_id + " does not sell recharges");
    }
  } else if (merchant_user && !internal_channel) {
    return Status(Errc::kPermissionDenied, "merchant users sell only POS recharges");
  }
  if (r.to_account && !online(r.channel)) {
    return Status(Errc::kInvalidArgument, "only bank and phone orders top up an online account");
  }
  if (r.channel != Channel::kMerchantPos && r.channel != Channel::kPoints &&
      !r.merchant_id.empty()) {
    return Status(Errc::kInvalidArgument, "a merchant id belongs to POS orders only");
  }

  // The card.
  auto card = cards_.info(r.card);
  if (!card.is_ok()) return card.status();
  if ((r.to_account || r.channel == Channel::kOnlineAccount) && !card->holder) {
    return Status(Errc::kRejected, "card " + to_hex(r.card) + " is anonymous: no online account");
  }
  if (!r.to_account) {
    if (Status st = check_card_for_load(*card, r.amount_fen); !st.is_ok()) return st;
  }
  auto risk = risk_.check_recharge(r.merchant_id, r.card, r.amount_fen, r.order_id);
  if (!risk.is_ok()) return risk.status();
  if (risk->reject) {
    refusal_ = Refusal{r.merchant_id, r.card, r.order_id, r.amount_fen, risk->reason};
    return Status(Errc::kRejected, risk->reason);
  }

  if (Status st = store_
                      .query("INSERT INTO recharge_orders(order_id, channel, card_serial, "
                             "holder_id, to_account, amount_fen, merchant_id, voucher_code, "
                             "actor, fingerprint, state, created_at_us, created_date) VALUES "
                             "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?12)")
                      .bind(1, r.order_id)
                      .bind(2, static_cast<std::int64_t>(r.channel))
                      .bind_blob(3, r.card)
                      .bind(4, card->holder ? card->holder->id : std::int64_t{0})
                      .bind(5, std::int64_t{r.to_account ? 1 : 0})
                      .bind(6, r.amount_fen)
                      .bind(7, r.merchant_id)
                      .bind(8, r.voucher_code)
                      .bind(9, ctx.actor)
                      .bind(10, fp)
                      .bind(11, calendar_.now_us())
                      .bind(12, std::int64_t{calendar_.today_yyyymmdd()})
                      .run();
      !st.is_ok()) {
    return st;
  }
  auto o = order(r.order_id);
  if (!o.is_ok()) return o.status();
  if (Status st = pay(ctx, r, *o); !st.is_ok()) return st;
  return order(r.order_id);
}

Status Recharge::pay(const Context& ctx, const OrderRequest& r, Order& o) {
  (void)ctx;
  const std::string ref = "order " + r.order_id;
  std::string_view source;
  switch (r.channel) {
    case Channel::kCounter:
      source = account::kIssuerCash;
      break;
    case Channel::kMerchantPos:
      if (Status s = merchants_.use_quota(r.merchant_id, r.amount_fen); !s.is_ok()) return s;
      source = account::kRechargeQuota;
      break;
    case Channel::kVoucher: {
      auto q = store_.query(
          "UPDATE vouchers SET state = 1, order_id = ?2, redeemed_date = ?4 WHERE code = ?1 AND "
          "state = 0 AND face_fen = ?3 RETURNING 1");
      q.bind(1, r.voucher_code)
          .bind(2, r.order_id)
          .bind(3, r.amount_fen)
          .bind(4, std::int64_t{calendar_.today_yyyymmdd()});
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) {
        return Status(Errc::kRejected, "voucher is unknown, used, or not worth " +
                                           std::to_string(r.amount_fen) + " fen");
      }
      source = account::kVoucherReceivable;
      break;
    }
    case Channel::kOnlineAccount: {
      auto c = cards_.info(r.card);
      if (!c.is_ok()) return c.status();
      if (Status s = cards_.debit_account(c->holder->id, r.amount_fen); !s.is_ok()) return s;
      source = account::kOnlineAccounts;
      break;
    }
    case Channel::kPoints:
      if (Status s = merchants_.take_points(r.card, r.amount_fen / kPointValueFen,
                                            Merchants::kMoveLoad, r.merchant_id, r.order_id);
          !s.is_ok()) {
        return s;
      }
      source = account::kPointsLiability;
      break;
    case Channel::kBank:
    case Channel::kPhone:
      // The bank decides later; we ask it after all our writes, so that a refusal here leaves
      // the bank with nothing.
      if (Status s = store_
                         .query("UPDATE recharge_orders SET bank_next_query_us = ?2 "
                                "WHERE order_id = ?1")
                         .bind(1, r.order_id)
                         .bind(2, calendar_.now_us() + options_.bank_timeout_us)
                         .run();
          !s.is_ok()) {
        return s;
      }
      return bank_.submit({r.order_id, r.amount_fen});
    case Channel::kRebate:
      return Status(Errc::kInternal, "rebate orders are made by release_rebates");
  }
  if (Status s = post("recharge_paid", ref, source, account::kPendingLoads, r.amount_fen);
      !s.is_ok()) {
    return s;
  }
  o.state = OrderState::kPaid;
  return set_state(r.order_id, OrderState::kPaid, "");
}

// ---- the load protocol ---------------------------------------------------------------------

Status Recharge::mark_loaded(const Order& o, bool tac_verified, const Mac4* tac) {
  if (Status s = post("load", "order " + o.order_id, account::kPendingLoads, account::kCardFloat,
                      o.amount_fen);
      !s.is_ok()) {
    return s;
  }
  if (Status s = cards_.credit(o.card, o.amount_fen); !s.is_ok()) return s;
  std::int64_t counter = 0;
  {
    auto q = store_.query("SELECT auth_counter FROM recharge_orders WHERE order_id = ?1");
    q.bind(1, o.order_id);
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    counter = *row ? q.column_int64(0) : 0;
  }
  // The credit moved the card's online counter on by one.
  if (Status s = cards_.set_online_counter(o.card, static_cast<std::uint16_t>(counter + 1));
      !s.is_ok()) {
    return s;
  }
  auto q =
      store_.query("UPDATE recharge_orders SET tac = ?2, tac_verified = ?3 WHERE order_id = ?1");
  q.bind(1, o.order_id).bind(3, std::int64_t{tac_verified ? 1 : 0});
  if (tac != nullptr) {
    q.bind_blob(2, *tac);
  } else {
    q.bind_null(2);
  }
  if (Status s = q.run(); !s.is_ok()) return s;
  if (Status s = set_state(o.order_id, OrderState::kLoaded, ""); !s.is_ok()) return s;
  if (Status s = schedule_rebate(o); !s.is_ok()) return s;
  auto c = issuance_.card(o.card);
  if (!c.is_ok()) return c.status();
  return notifier_.on_recharge(o.card, o.amount_fen, c->balance_fen);
}

Status Recharge::settle_doubt(const Serial8& card, std::uint16_t counter,
                              const std::string& asking_order, std::string& finding) {
  // In doubt: AUTHORIZED orders, and PAID ones whose authorization a terminal aborted (the
  // card said no, or so the terminal believed) and that no counter has cleared since.
  std::vector<std::pair<Order, std::int64_t>> doubtful;
  {
    auto q = store_.query(std::string(kOrderColumns) +
                          "WHERE card_serial = ?1 AND (state = 2 OR (state = 1 AND "
                          "auth_counter IS NOT NULL)) ORDER BY order_id");
    q.bind_blob(1, card);
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      doubtful.emplace_back(order_from_row(q), 0);
    }
  }
  for (auto& [o, auth_counter] : doubtful) {
    auto q = store_.query("SELECT auth_counter FROM recharge_orders WHERE order_id = ?1");
    q.bind(1, o.order_id);
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    auth_counter = q.column_int64(0);
  }
  for (const auto& [o, auth_counter] : doubtful) {
    if (counter == auth_counter) {
      // The card never credited it: a pending load again, with no doubt left.
      if (Status s = set_state(o.order_id, OrderState::kPaid, ""); !s.is_ok()) return s;
      if (Status s = store_
                         .query("UPDATE recharge_orders SET auth_counter = NULL WHERE "
                                "order_id = ?1")
                         .bind(1, o.order_id)
                         .run();
          !s.is_ok()) {
        return s;
      }
    } else if (counter > auth_counter) {
      // Only our MAC2 for that counter could have moved it: the credit happened.
      if (o.state == OrderState::kPaid) {
        finding = "order " + o.order_id + " was reported aborted, but card " + to_hex(card) +
                  " took the credit (online counter " + std::to_string(counter) + ")";
      }
      if (Status s = mark_loaded(o, false, nullptr); !s.is_ok()) return s;
    } else {
      return Status(Errc::kRejected, "card " + to_hex(card) + " answers online counter " +
                                         std::to_string(counter) + " below the " +
                                         std::to_string(auth_counter) + " order " + o.order_id +
                                         " was authorized for (asked by " + asking_order +
                                         "): a cloned or restored card?");
    }
  }
  return Status::ok();
}

Result<LoadAuthorization> Recharge::authorize_load(const std::string& actor,
                                                   const LoadAuthRequest& r) {
  std::string finding;  // raised after the audited transaction, whatever its outcome
  auto result =
      users_.audited_as(actor, "load_auth", r.order_id, [&]() -> Result<LoadAuthorization> {
        auto o = order(r.order_id);
        if (!o.is_ok()) return o.status();
        if (o->to_account)
          return Status(Errc::kRejected, "order " + r.order_id + " tops up an account");
        if (o->card != r.card || o->amount_fen != std::int64_t{r.init.amount_fen}) {
          return Status(Errc::kConflict, "order " + r.order_id + " is for card " + to_hex(o->card) +
                                             " and " + std::to_string(o->amount_fen) +
                                             " fen; the load asks otherwise");
        }
        if (r.init.type != protocol::txn::kLoadEp) {
          return Status(Errc::kInvalidArgument, "only electronic purse loads (type 02)");
        }
        if (o->state == OrderState::kAuthorized) {
          // A repeat of the same request gets the same answer.
          auto q = store_.query(
              "SELECT auth_terminal, auth_counter, auth_balance_before, auth_random, auth_mac1, "
              "auth_datetime, auth_mac2 FROM recharge_orders WHERE order_id = ?1");
          q.bind(1, r.order_id);
          auto row = q.step();
          if (!row.is_ok()) return row.status();
          const auto& in = r.init;
          if (q.column_blob(0) == Bytes(in.terminal.begin(), in.terminal.end()) &&
              q.column_int64(1) == in.online_counter &&
              q.column_int64(2) == in.balance_before_fen &&
              q.column_blob(3) == Bytes(in.random.begin(), in.random.end()) &&
              q.column_blob(4) == Bytes(in.mac1.begin(), in.mac1.end())) {
            LoadAuthorization a;
            a.order_id = r.order_id;
            a.amount_fen = o->amount_fen;
            (void)sql::copy_blob(q.column_blob(5), a.datetime);
            (void)sql::copy_blob(q.column_blob(6), a.mac2);
            return a;
          }
        } else if (o->state != OrderState::kPaid) {
          return Status(Errc::kRejected, "order " + r.order_id + " is " +
                                             order_state_name(o->state) +
                                             ", not waiting for a load");
        }
        auto card = cards_.info(r.card);
        if (!card.is_ok()) return card.status();
        if (r.key_version != card->card.key_version || r.init.algorithm != card->card.algorithm) {
          return Status(Errc::kRejected, "card answers key version " +
                                             std::to_string(r.key_version) +
                                             ", the backend issued it with " +
                                             std::to_string(card->card.key_version));
        }
        if (Status s = check_card_for_load(*card, 0); !s.is_ok()) return s;
        if (std::int64_t{r.init.balance_before_fen} + o->amount_fen > options_.max_balance_fen) {
          return Status(Errc::kRejected,
                        "card would hold " +
                            std::to_string(r.init.balance_before_fen + o->amount_fen) +
                            " fen, over the limit of " + std::to_string(options_.max_balance_fen));
        }
        // MAC1 first: until it verifies, nothing the card said (balance, counter) is believed.
        auto dlk = card_key(card->card, true);
        if (!dlk.is_ok()) return dlk.status();
        if (!protocol::load::mac1_ok(r.init, *dlk)) {
          return Status(Errc::kBadMac, "MAC1 of card " + to_hex(r.card) + " for order " +
                                           r.order_id + " does not verify");
        }
        if (Status s = settle_doubt(r.card, r.init.online_counter, r.order_id, finding); !s.is_ok())
          return s;
        o = order(r.order_id);
        if (!o.is_ok()) return o.status();
        if (o->state == OrderState::kLoaded) {
          return Status(Errc::kDuplicate, "order " + r.order_id +
                                              " is already on the card (its online counter moved "
                                              "past the authorization)");
        }
        // A counter that moved without us: a load we gave up on happened after all, or a load
        // from elsewhere. Allowed (the MAC1 is good), but an operator should know.
        auto again = cards_.info(r.card);
        if (!again.is_ok()) return again.status();
        if (finding.empty() && again->online_counter &&
            r.init.online_counter != *again->online_counter) {
          finding = "online counter of card " + to_hex(r.card) + " is " +
                    std::to_string(r.init.online_counter) + ", the backend expected " +
                    std::to_string(*again->online_counter);
        }
        LoadAuthorization a;
        a.order_id = r.order_id;
        a.amount_fen = o->amount_fen;
        a.datetime = calendar_.now_datetime();
        a.mac2 = protocol::load::mac2(r.init, *dlk, a.datetime);
        if (Status s = store_
                           .query("UPDATE recharge_orders SET state = 2, auth_terminal = ?2, "
                                  "auth_counter = ?3, auth_balance_before = ?4, auth_random = ?5, "
                                  "auth_mac1 = ?6, auth_datetime = ?7, auth_mac2 = ?8, "
                                  "auth_key_version = ?9 WHERE order_id = ?1")
                           .bind(1, r.order_id)
                           .bind_blob(2, r.init.terminal)
                           .bind(3, std::int64_t{r.init.online_counter})
                           .bind(4, std::int64_t{r.init.balance_before_fen})
                           .bind_blob(5, r.init.random)
                           .bind_blob(6, r.init.mac1)
                           .bind_blob(7, a.datetime)
                           .bind_blob(8, a.mac2)
                           .bind(9, std::int64_t{r.key_version})
                           .run();
            !s.is_ok()) {
          return s;
        }
        if (Status s = cards_.set_online_counter(r.card, r.init.online_counter); !s.is_ok())
          return s;
        return a;
      });
  if (!finding.empty() && result.is_ok()) {
    (void)risk_.raise(std::string(), r.card, r.order_id, std::int64_t{r.init.amount_fen}, finding);
  }
  return result;
}

Result<LoadConfirmation> Recharge::confirm_load(const std::string& actor,
                                                const std::string& order_id, const Mac4& tac) {
  Serial8 card{};
  std::int64_t amount = 0;
  auto result =
      users_.audited_as(actor, "load_confirm", order_id, [&]() -> Result<LoadConfirmation> {
        auto o = order(order_id);
        if (!o.is_ok()) return o.status();
        card = o->card;
        amount = o->amount_fen;
        if (o->state != OrderState::kAuthorized && o->state != OrderState::kLoaded) {
          return Status(Errc::kRejected, "order " + order_id + " is " + order_state_name(o->state) +
                                             "; nothing to confirm");
        }
        auto q = store_.query(
            "SELECT auth_terminal, auth_counter, auth_balance_before, auth_random, auth_mac1, "
            "auth_datetime, tac FROM recharge_orders WHERE order_id = ?1");
        q.bind(1, order_id);
        auto row = q.step();
        if (!row.is_ok()) return row.status();
        protocol::load::LoadInit init;
        protocol::DateTime7 datetime{};
        auto c = issuance_.card(o->card);
        if (!c.is_ok()) return c.status();
        init.algorithm = c->algorithm;
        (void)sql::copy_blob(q.column_blob(0), init.terminal);
        init.online_counter = static_cast<std::uint16_t>(q.column_int64(1));
        init.balance_before_fen = static_cast<std::uint32_t>(q.column_int64(2));
        (void)sql::copy_blob(q.column_blob(3), init.random);
        (void)sql::copy_blob(q.column_blob(4), init.mac1);
        (void)sql::copy_blob(q.column_blob(5), datetime);
        init.amount_fen = static_cast<std::uint32_t>(o->amount_fen);
        const bool has_tac = !q.column_is_null(6);
        const Bytes stored_tac = has_tac ? q.column_blob(6) : Bytes();
        LoadConfirmation out;
        out.order_id = order_id;
        out.balance_after_fen = std::int64_t{init.balance_before_fen} + o->amount_fen;
        if (has_tac) {
          if (stored_tac != Bytes(tac.begin(), tac.end())) {
            return Status(Errc::kConflict, "order " + order_id + " was confirmed with another TAC");
          }
          out.duplicate = true;
          return out;
        }
        auto dtk = card_key(*c, false);
        if (!dtk.is_ok()) return dtk.status();
        if (!crypto::mac_equal(protocol::load::expected_tac(init, *dtk, datetime), tac)) {
          return Status(Errc::kBadMac, "load TAC for order " + order_id + " does not verify");
        }
        if (o->state == OrderState::kLoaded) {
          // Loaded on the card's word (its counter moved); the TAC now proves it.
          if (Status s = store_
                             .query("UPDATE recharge_orders SET tac = ?2, tac_verified = 1 "
                                    "WHERE order_id = ?1")
                             .bind(1, order_id)
                             .bind_blob(2, tac)
                             .run();
              !s.is_ok()) {
            return s;
          }
          return out;
        }
        if (Status s = mark_loaded(*o, true, &tac); !s.is_ok()) return s;
        return out;
      });
  if (!result.is_ok() && result.status().code() == Errc::kBadMac) {
    // Outside the rolled-back transaction, so the finding stays.
    (void)risk_.raise(std::string(), card, order_id, amount, result.status().message());
  }
  return result;
}

Result<Order> Recharge::abort_load(const std::string& actor, const std::string& order_id,
                                   const std::string& reason) {
  return users_.audited_as(actor, "load_abort", order_id, [&]() -> Result<Order> {
    if (Status s = sql::check_text("reason", reason, 128, false); !s.is_ok()) return s;
    auto o = order(order_id);
    if (!o.is_ok()) return o.status();
    if (o->state == OrderState::kPaid || o->state == OrderState::kReversed) return o;
    if (o->state != OrderState::kAuthorized) {
      return Status(Errc::kRejected, "order " + order_id + " is " + order_state_name(o->state) +
                                         "; nothing to abort");
    }
    if (Status s = set_state(order_id, OrderState::kPaid, ""); !s.is_ok()) return s;
    o->state = OrderState::kPaid;
    if (o->channel == Channel::kCounter || o->channel == Channel::kMerchantPos) {
      if (Status s = refund_to_source(*o, "load failed: " + reason); !s.is_ok()) return s;
    }
    return order(order_id);
  });
}

// ---- reversal ------------------------------------------------------------------------------

Status Recharge::refund_to_source(const Order& o, const std::string& reason) {
  const std::string ref = "order " + o.order_id;
  std::string_view back;
  switch (o.channel) {
    case Channel::kCounter:
      back = account::kIssuerCash;
      break;
    case Channel::kMerchantPos:
      if (Status s = merchants_.restore_quota(o.merchant_id, o.amount_fen); !s.is_ok()) return s;
      back = account::kRechargeQuota;
      break;
    case Channel::kBank:
    case Channel::kPhone:
      if (Status s = bank_.refund(o.order_id, o.amount_fen); !s.is_ok()) return s;
      back = account::kIssuerCash;
      break;
    case Channel::kVoucher:
      if (Status s = store_
                         .query("UPDATE vouchers SET state = 0, order_id = NULL, "
                                "redeemed_date = NULL WHERE order_id = ?1")
                         .bind(1, o.order_id)
                         .run();
          !s.is_ok()) {
        return s;
      }
      back = account::kVoucherReceivable;
      break;
    case Channel::kOnlineAccount: {
      auto q = store_.query("SELECT holder_id FROM recharge_orders WHERE order_id = ?1");
      q.bind(1, o.order_id);
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (Status s = cards_.credit_account(q.column_int64(0), o.amount_fen); !s.is_ok()) return s;
      back = account::kOnlineAccounts;
      break;
    }
    case Channel::kRebate:
    case Channel::kPoints:
      return Status(Errc::kRejected, std::string(channel_name(o.channel)) +
                                         " orders are not refunded in money; the card collects "
                                         "them");
  }
  if (Status s = post("recharge_reversed", ref, account::kPendingLoads, back, o.amount_fen);
      !s.is_ok()) {
    return s;
  }
  return set_state(o.order_id, OrderState::kReversed, reason);
}

Result<Order> Recharge::reverse(const Session& by, const std::string& order_id,
                                const std::string& reason) {
  return users_.audited(by, "reverse_order", order_id, [&]() -> Result<Order> {
    if (Status s = users_.require(
            by, {Role::kAdmin, Role::kFinance, Role::kMerchantOwner, Role::kMerchantOperator},
            "reverse_order");
        !s.is_ok()) {
      return s;
    }
    if (Status s = sql::check_text("reason", reason, 128, true); !s.is_ok()) return s;
    auto o = order(order_id);
    if (!o.is_ok()) return o.status();
    if (!staff(&by) && (o->channel != Channel::kMerchantPos || o->merchant_id != by.merchant_id)) {
      return Status(Errc::kPermissionDenied, "reverse_order: " + by.user +
                                                 " may reverse only POS orders of merchant " +
                                                 by.merchant_id);
    }
    if (o->state == OrderState::kAuthorized) {
      return Status(Errc::kRejected, "order " + order_id +
                                         " is in doubt (MAC2 issued); the card must be presented "
                                         "again before it can be reversed");
    }
    {
      // Aborted by a terminal, and no later answer of the card has settled whether it took
      // the credit: paying the money back now could pay it twice.
      auto q = store_.query(
          "SELECT auth_counter IS NOT NULL FROM recharge_orders "
          "WHERE order_id = ?1");
      q.bind(1, order_id);
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (o->state == OrderState::kPaid && q.column_int64(0) != 0) {
        return Status(Errc::kRejected, "order " + order_id +
                                           " had a load aborted; the card must be presented "
                                           "again before it can be reversed");
      }
    }
    if (o->state != OrderState::kPaid) {
      return Status(Errc::kRejected, "order " + order_id + " is " + order_state_name(o->state) +
                                         "; only a paid, unloaded order can be reversed");
    }
    if (Status s = refund_to_source(*o, reason); !s.is_ok()) return s;
    return order(order_id);
  });
}

// ---- bank ----------------------------------------------------------------------------------

Status Recharge::bank_decided(const Order& o, bool approved, const std::string& bank_ref,
                              const std::string& reason) {
  if (Status s = store_.query("UPDATE recharge_orders SET bank_ref = ?2 WHERE order_id = ?1")
                     .bind(1, o.order_id)
                     .bind(2, bank_ref)
                     .run();
      !s.is_ok()) {
    return s;
  }
  if (!approved) {
    return set_state(o.order_id, OrderState::kFailed,
                     reason.empty() ? std::string("declined by the bank") : reason);
  }
  if (!o.to_account) {
    if (Status s = post("recharge_paid", "order " + o.order_id, account::kIssuerCash,
                        account::kPendingLoads, o.amount_fen);
        !s.is_ok()) {
      return s;
    }
    return set_state(o.order_id, OrderState::kPaid, "");
  }
  auto q = store_.query("SELECT holder_id FROM recharge_orders WHERE order_id = ?1");
  q.bind(1, o.order_id);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  const std::int64_t holder = q.column_int64(0);
  if (Status s = cards_.credit_account(holder, o.amount_fen); !s.is_ok()) {
    // The account cannot take it: the money goes back where it came from.
    if (Status r = bank_.refund(o.order_id, o.amount_fen); !r.is_ok()) return r;
    return set_state(o.order_id, OrderState::kFailed, s.message() + "; refunded");
  }
  if (Status s = post("account_top_up", "order " + o.order_id, account::kIssuerCash,
                      account::kOnlineAccounts, o.amount_fen);
      !s.is_ok()) {
    return s;
  }
  return set_state(o.order_id, OrderState::kLoaded, "");
}

Status Recharge::on_bank_callback(const BankCallback& cb) {
  std::string outcome = "applied";
  bool finding = false;
  Status result = users_.audited_as("bank", "bank_callback", cb.order_id, [&]() -> Status {
    auto o = order(cb.order_id);
    if (!o.is_ok()) {
      if (o.status().code() == Errc::kNotFound) {
        outcome = "unknown order";
        finding = true;
      }
      return o.status();
    }
    if (!online(o->channel)) {
      outcome = "not a bank order";
      finding = true;
      return Status(Errc::kRejected, "order " + cb.order_id + " is not paid through the bank");
    }
    if (cb.amount_fen != o->amount_fen) {
      outcome = "amount mismatch";
      finding = true;
      return Status(Errc::kRejected, "bank says " + std::to_string(cb.amount_fen) +
                                         " fen for order " + cb.order_id + " of " +
                                         std::to_string(o->amount_fen));
    }
    const bool approved = cb.result == BankResult::kApproved;
    if (o->state == OrderState::kCreated) return bank_decided(*o, approved, cb.bank_ref, cb.reason);
    // Decided before: by an earlier callback, a query, or our giving up.
    auto q = store_.query(
        "SELECT bank_gave_up, bank_late_refund FROM recharge_orders WHERE order_id = ?1");
    q.bind(1, cb.order_id);
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    const bool gave_up = q.column_int64(0) != 0, refunded = q.column_int64(1) != 0;
    if (approved && gave_up && !refunded) {
      outcome = "late approval refunded";
      finding = true;
      if (Status s = bank_.refund(cb.order_id, cb.amount_fen); !s.is_ok()) return s;
      return store_.query("UPDATE recharge_orders SET bank_late_refund = 1 WHERE order_id = ?1")
          .bind(1, cb.order_id)
          .run();
    }
    const bool we_said_paid = o->state != OrderState::kFailed;
    if (approved == we_said_paid || (approved && gave_up)) {
      outcome = "duplicate";
      return Status(Errc::kDuplicate, "order " + cb.order_id + " was decided already");
    }
    outcome = "contradicts";
    finding = true;
    return Status(Errc::kConflict,
                  "bank now says " + std::string(approved ? "approved" : "declined") +
                      " for order " + cb.order_id + ", which is " + order_state_name(o->state));
  });
  (void)store_
      .query(
          "INSERT INTO bank_callbacks(at_us, order_id, bank_ref, result, amount_fen, outcome) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
      .bind(1, calendar_.now_us())
      .bind(2, cb.order_id)
      .bind(3, cb.bank_ref)
      .bind(4, static_cast<std::int64_t>(cb.result))
      .bind(5, cb.amount_fen)
      .bind(6, outcome)
      .run();
  if (finding) {
    Serial8 card{};
    if (auto o = order(cb.order_id); o.is_ok()) card = o->card;
    (void)risk_.raise(std::string(), card, cb.order_id, cb.amount_fen,
                      "bank callback: " + outcome + ": " + result.to_string());
  }
  return result;
}

Result<RechargePoll> Recharge::poll() {
  RechargePoll out;
  for (const BankCallback& cb : bank_.poll()) {
    const Status s = on_bank_callback(cb);
    if (s.is_ok()) {
      ++out.callbacks;
    } else {
      ++out.callbacks_ignored;
    }
  }
  // Orders the bank has not answered in time: ask.
  std::vector<std::string> waiting;
  {
    auto q = store_.query(
        "SELECT order_id FROM recharge_orders WHERE state = 0 AND bank_next_query_us <= ?1 "
        "ORDER BY bank_next_query_us, order_id LIMIT ?2");
    q.bind(1, calendar_.now_us()).bind(2, static_cast<std::int64_t>(options_.poll_batch_max));
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      waiting.push_back(q.column_text(0));
    }
  }
  for (const std::string& id : waiting) {
    ++out.queried;
    Status s = users_.audited_as("scheduler", "bank_query", id, [&]() -> Status {
      auto o = order(id);
      if (!o.is_ok()) return o.status();
      auto reply = bank_.query(id);
      if (!reply.is_ok()) return reply.status();
      switch (reply->state) {
        case BankPaymentState::kApproved:
          return bank_decided(*o, true, reply->bank_ref, "");
        case BankPaymentState::kDeclined:
          ++out.failed;
          return bank_decided(*o, false, reply->bank_ref, "declined (found by query)");
        case BankPaymentState::kUnknown:
          ++out.failed;
          return set_state(id, OrderState::kFailed, "the bank has no such payment");
        case BankPaymentState::kProcessing:
          break;
      }
      auto q = store_.query(
          "UPDATE recharge_orders SET bank_queries = bank_queries + 1, bank_next_query_us = ?2 "
          "WHERE order_id = ?1 RETURNING bank_queries");
      q.bind(1, id).bind(2, calendar_.now_us() + options_.bank_timeout_us);
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (q.column_int64(0) < options_.bank_queries_max) return Status::ok();
      ++out.failed;
      if (Status st =
              store_.query("UPDATE recharge_orders SET bank_gave_up = 1 WHERE order_id = ?1")
                  .bind(1, id)
                  .run();
          !st.is_ok()) {
        return st;
      }
      return set_state(id, OrderState::kFailed,
                       "the bank did not answer after " +
                           std::to_string(options_.bank_queries_max) + " queries");
    });
    // One order that cannot be processed (its refusal is in the audit log) must not stop the
    // others; it is tried again at the next poll.
    if (!s.is_ok()) ++out.errors;
  }
  auto released = release_rebates(out.errors);
  if (!released.is_ok()) return released.status();
  out.rebates_released = *released;
  return out;
}

// ---- vouchers ------------------------------------------------------------------------------

Status Recharge::import_vouchers(const Session& by, const std::string& issuer,
                                 const std::vector<Voucher>& vouchers) {
  return users_.audited(
      by, "import_vouchers", issuer + " " + std::to_string(vouchers.size()), [&]() -> Status {
        if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "import_vouchers");
            !s.is_ok()) {
          return s;
        }
        if (Status s = sql::check_text("voucher issuer", issuer, 64, true); !s.is_ok()) return s;
        if (vouchers.size() > options_.voucher_import_max) {
          return Status(Errc::kTooLarge, "import at most " +
                                             std::to_string(options_.voucher_import_max) +
                                             " vouchers at a time");
        }
        for (const Voucher& v : vouchers) {
          if (v.code.size() < 4 || v.code.size() > 32) {
            return Status(Errc::kInvalidArgument, "voucher codes are 4..32 characters");
          }
          if (v.face_fen <= 0 || v.face_fen > options_.voucher_face_max_fen) {
            return Status(Errc::kInvalidArgument, "voucher face value out of range");
          }
          Status s = store_
                         .query(
                             "INSERT INTO vouchers(code, issuer, face_fen, state, settled, "
                             "imported_at_us) VALUES (?1, ?2, ?3, 0, 0, ?4)")
                         .bind(1, v.code)
                         .bind(2, issuer)
                         .bind(3, v.face_fen)
                         .bind(4, calendar_.now_us())
                         .run();
          if (s.code() == Errc::kDuplicate) {
            return Status(Errc::kDuplicate, "voucher " + v.code + " exists; nothing imported");
          }
          if (!s.is_ok()) return s;
        }
        return Status::ok();
      });
}

Result<std::int64_t> Recharge::settle_vouchers(const Session& by, const std::string& issuer) {
  return users_.audited(by, "settle_vouchers", issuer, [&]() -> Result<std::int64_t> {
    if (Status s = users_.require(by, {Role::kAdmin, Role::kFinance}, "settle_vouchers");
        !s.is_ok()) {
      return s;
    }
    auto q = store_.query(
        "UPDATE vouchers SET settled = 1 WHERE issuer = ?1 AND state = 1 AND settled = 0 "
        "RETURNING face_fen");
    q.bind(1, issuer);
    std::int64_t total = 0;
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      total += q.column_int64(0);
    }
    if (total > 0) {
      if (Status s = post("vouchers_settled", "issuer " + issuer, account::kIssuerCash,
                          account::kVoucherReceivable, total);
          !s.is_ok()) {
        return s;
      }
    }
    return total;
  });
}

// ---- rebates -------------------------------------------------------------------------------

Result<std::int64_t> Recharge::add_rebate_rule(const Session& by, const RebateRule& r) {
  return users_.audited(by, "add_rebate_rule", r.name, [&]() -> Result<std::int64_t> {
    if (Status s = users_.require(by, {Role::kAdmin}, "add_rebate_rule"); !s.is_ok()) return s;
    if (Status s = sql::check_text("rule name", r.name, 64, true); !s.is_ok()) return s;
    if (r.min_recharge_fen <= 0 || r.rebate_fen <= 0 || r.rebate_fen > r.min_recharge_fen ||
        r.installments < 1 || r.installments > 60 || r.interval_months < 1 ||
        r.interval_months > 12) {
      return Status(Errc::kInvalidArgument,
                    "rebate rule: 0 < rebate <= minimum recharge, 1..60 instalments, "
                    "1..12 months apart");
    }
    auto n = sql::scalar(store_, "SELECT count(*) FROM rebate_rules");
    if (!n.is_ok()) return n.status();
    if (static_cast<std::size_t>(*n) >= options_.rebate_rules_max) {
      return Status(Errc::kTooLarge, "rebate rule limit reached");
    }
    if (Status s = store_
                       .query("INSERT INTO rebate_rules(name, min_recharge_fen, rebate_fen, "
                              "installments, interval_months, enabled, created_at_us) "
                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                       .bind(1, r.name)
                       .bind(2, r.min_recharge_fen)
                       .bind(3, r.rebate_fen)
                       .bind(4, std::int64_t{r.installments})
                       .bind(5, std::int64_t{r.interval_months})
                       .bind(6, std::int64_t{r.enabled ? 1 : 0})
                       .bind(7, calendar_.now_us())
                       .run();
        !s.is_ok()) {
      return s;
    }
    return store_.last_insert_rowid();
  });
}

Status Recharge::set_rebate_rule_enabled(const Session& by, std::int64_t id, bool enabled) {
  return users_.audited(by, "set_rebate_rule", std::to_string(id), [&]() -> Status {
    if (Status s = users_.require(by, {Role::kAdmin}, "set_rebate_rule"); !s.is_ok()) return s;
    auto q = store_.query("UPDATE rebate_rules SET enabled = ?2 WHERE id = ?1 RETURNING 1");
    q.bind(1, id).bind(2, std::int64_t{enabled ? 1 : 0});
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) return Status(Errc::kNotFound, "no rebate rule " + std::to_string(id));
    return Status::ok();
  });
}

Status Recharge::schedule_rebate(const Order& o) {
  if (o.to_account || o.channel == Channel::kRebate || o.channel == Channel::kPoints) {
    return Status::ok();
  }
  auto q = store_.query(
      "SELECT id, rebate_fen, installments, interval_months FROM rebate_rules "
      "WHERE enabled <> 0 AND min_recharge_fen <= ?1 ORDER BY rebate_fen DESC, id LIMIT 1");
  q.bind(1, o.amount_fen);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  if (!*row) return Status::ok();
  const std::int64_t rule = q.column_int64(0), total = q.column_int64(1);
  const int n = static_cast<int>(q.column_int64(2)), months = static_cast<int>(q.column_int64(3));
  const int loaded = calendar_.today_yyyymmdd();
  for (int k = 1; k <= n; ++k) {
    // Equal parts, the remainder in the first: they add up exactly.
    const std::int64_t part = total / n + (k == 1 ? total % n : 0);
    if (Status s = store_
                       .query("INSERT INTO rebate_installments(order_id, card_serial, rule_id, "
                              "seq, amount_fen, due_date, state) VALUES (?1, ?2, ?3, ?4, ?5, "
                              "?6, 0)")
                       .bind(1, o.order_id)
                       .bind_blob(2, o.card)
                       .bind(3, rule)
                       .bind(4, std::int64_t{k})
                       .bind(5, part)
                       .bind(6, std::int64_t{dates::add_months(loaded, k * months)})
                       .run();
        !s.is_ok()) {
      return s;
    }
  }
  return post("rebate_granted", "order " + o.order_id, account::kMarketingExpense,
              account::kRebatesOwed, total);
}

Result<std::int64_t> Recharge::release_rebates(std::int64_t& errors) {
  struct Due {
    std::int64_t id;
    Serial8 card;
    std::int64_t amount;
  };
  std::vector<Due> due;
  {
    auto q = store_.query(
        "SELECT id, card_serial, amount_fen FROM rebate_installments WHERE state = 0 AND "
        "due_date <= ?1 ORDER BY due_date, id LIMIT ?2");
    q.bind(1, std::int64_t{calendar_.today_yyyymmdd()})
        .bind(2, static_cast<std::int64_t>(options_.poll_batch_max));
    for (;;) {
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) break;
      Due d{q.column_int64(0), {}, q.column_int64(2)};
      (void)sql::copy_blob(q.column_blob(1), d.card);
      due.push_back(d);
    }
  }
  std::int64_t released = 0;
  for (const Due& d : due) {
    const std::string order_id = "rebate-" + std::to_string(d.id);
    bool released_one = false;
    Status s = users_.audited_as("scheduler", "release_rebate", order_id, [&]() -> Status {
      auto card = issuance_.card(d.card);
      if (!card.is_ok()) return card.status();
      const bool gone = card->status == CardStatus::kRefunded ||
                        card->status == CardStatus::kCancelled ||
                        card->status == CardStatus::kReplaced;
      if (gone) {
        // Nobody left to collect it: the promise lapses.
        if (Status st = store_.query("UPDATE rebate_installments SET state = 2 WHERE id = ?1")
                            .bind(1, d.id)
                            .run();
            !st.is_ok()) {
          return st;
        }
        return post("rebate_forfeited", order_id, account::kRebatesOwed, account::kMarketingExpense,
                    d.amount);
      }
      if (Status st = store_
                          .query("INSERT INTO recharge_orders(order_id, channel, card_serial, "
                                 "holder_id, to_account, amount_fen, merchant_id, voucher_code, "
                                 "actor, fingerprint, state, created_at_us, created_date, "
                                 "paid_date) VALUES (?1, ?2, ?3, 0, 0, ?4, '', '', 'scheduler', "
                                 "?1, 1, ?5, ?6, ?6)")
                          .bind(1, order_id)
                          .bind(2, static_cast<std::int64_t>(Channel::kRebate))
                          .bind_blob(3, d.card)
                          .bind(4, d.amount)
                          .bind(5, calendar_.now_us())
                          .bind(6, std::int64_t{calendar_.today_yyyymmdd()})
                          .run();
          !st.is_ok()) {
        return st;
      }
      if (Status st = store_
                          .query("UPDATE rebate_installments SET state = 1, "
                                 "released_order_id = ?2 WHERE id = ?1")
                          .bind(1, d.id)
                          .bind(2, order_id)
                          .run();
          !st.is_ok()) {
        return st;
      }
      released_one = true;
      return post("rebate_released", order_id, account::kRebatesOwed, account::kPendingLoads,
                  d.amount);
    });
    if (!s.is_ok()) {
      ++errors;
    } else if (released_one) {
      ++released;
    }
  }
  return released;
}

// ---- conservation --------------------------------------------------------------------------

Result<std::int64_t> Recharge::pending_sum_fen() const {
  return sql::scalar(store_,
                     "SELECT coalesce(sum(amount_fen), 0) FROM recharge_orders "
                     "WHERE state IN (1, 2) AND to_account = 0");
}

Result<std::int64_t> Recharge::rebates_owed_sum_fen() const {
  return sql::scalar(
      store_, "SELECT coalesce(sum(amount_fen), 0) FROM rebate_installments WHERE state = 0");
}

Result<std::int64_t> Recharge::rebates_given_sum_fen() const {
  return sql::scalar(
      store_, "SELECT coalesce(sum(amount_fen), 0) FROM rebate_installments WHERE state <> 2");
}

Result<std::int64_t> Recharge::voucher_receivable_sum_fen() const {
  return sql::scalar(store_,
                     "SELECT coalesce(sum(face_fen), 0) FROM vouchers WHERE state = 1 AND "
                     "settled = 0");
}

}  // namespace citycard::backend
