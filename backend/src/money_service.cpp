#include "citycard/backend/money_service.h"

namespace citycard::backend {

namespace pw = protocol::wire;
namespace wire = citycard::wire;
using wire::Envelope;

namespace {

using backend::error_reply;  // the ErrorReply with a code (money_service.h), beside this one

Envelope error_reply(std::uint64_t id, const Status& s) {
  return error_reply(id, errc_to_code(s.code()), s.message());
}

Envelope reply_to(const Envelope& request) {
  Envelope e;
  e.set_request_id(request.request_id());
  return e;
}

std::string actor_of(const TerminalRecord& t) {
  return "terminal:" + to_hex(t.terminal_id);
}

}  // namespace

wire::Envelope error_reply(std::uint64_t request_id, wire::Code code, std::string message) {
  wire::Envelope e;
  e.set_request_id(request_id);
  e.mutable_error()->set_code(code);
  e.mutable_error()->set_message(std::move(message));
  return e;
}

wire::Code errc_to_code(Errc code) {
  switch (code) {
    case Errc::kOk:
      return wire::OK;
    case Errc::kInvalidArgument:
    case Errc::kMalformed:
      return wire::MALFORMED;
    case Errc::kNotFound:
      return wire::NOT_FOUND;
    case Errc::kBadMac:
      return wire::BAD_MAC;
    case Errc::kDuplicate:
      return wire::DUPLICATE;
    case Errc::kInsufficientFunds:
      return wire::INSUFFICIENT_FUNDS;
    case Errc::kRejected:
    case Errc::kTooLarge:
      return wire::REJECTED;
    case Errc::kConflict:
      return wire::CONFLICT;
    case Errc::kPermissionDenied:
      return wire::FORBIDDEN;
    case Errc::kUnavailable:
    case Errc::kTimeout:
      return wire::BUSY;
    default:
      return wire::INTERNAL;
  }
}

bool MoneyService::handles(Envelope::BodyCase body) const {
  switch (body) {
    case Envelope::kRechargeOrder:
    case Envelope::kLoadAuth:
    case Envelope::kLoadConfirm:
    case Envelope::kPendingQuery:
    case Envelope::kBlacklistRequest:
    case Envelope::kParamsRequest:
      return true;
    default:
      return false;
  }
}

Envelope MoneyService::dispatch(const Envelope& request) {
  switch (request.body_case()) {
    case Envelope::kRechargeOrder:
      return recharge_order(request);
    case Envelope::kLoadAuth:
      return load_auth(request);
    case Envelope::kLoadConfirm:
      return load_confirm(request);
    case Envelope::kPendingQuery:
      return pending(request);
    case Envelope::kBlacklistRequest:
      return blacklist(request);
    case Envelope::kParamsRequest:
      return params(request);
    default:
      return error_reply(request.request_id(), wire::UNSUPPORTED, "not a money message");
  }
}

Result<TerminalRecord> MoneyService::terminal(const std::string& field) const {
  protocol::TerminalId id{};
  if (!pw::to_terminal(field, id)) return Status(Errc::kMalformed, "terminal id must be 6 bytes");
  return issuance_.terminal(id);
}

namespace {
// An unknown terminal has its own wire code; other lookup failures are internal.
Envelope terminal_error(std::uint64_t id, const Status& s) {
  if (s.code() == Errc::kNotFound) return error_reply(id, wire::UNKNOWN_TERMINAL, s.message());
  return error_reply(id, s);
}
}  // namespace

Envelope MoneyService::recharge_order(const Envelope& request) {
  const std::uint64_t id = request.request_id();
  const wire::RechargeOrderRequest& m = request.recharge_order();
  auto t = terminal(m.terminal_id());
  if (!t.is_ok()) return terminal_error(id, t.status());
  OrderRequest r;
  r.order_id = m.order_id();
  r.channel = static_cast<Channel>(m.channel());
  if (!pw::to_serial(m.card_serial(), r.card)) {
    return error_reply(id, wire::MALFORMED, "card serial must be 8 bytes");
  }
  r.amount_fen = m.amount_fen();
  r.voucher_code = m.voucher_code();
  r.to_account = m.to_account();
  // A POS sells from its own merchant's quota; nobody else's.
  if (r.channel == Channel::kMerchantPos) r.merchant_id = t->operator_id;
  auto o = recharge_.create_customer_order(actor_of(*t), r, t->operator_id);
  if (!o.is_ok()) return error_reply(id, o.status());
  Envelope e = reply_to(request);
  auto* reply = e.mutable_recharge_order_reply();
  reply->set_order_id(o->order_id);
  reply->set_state(static_cast<wire::OrderState>(o->state));
  reply->set_amount_fen(o->amount_fen);
  reply->set_failure(o->failure);
  return e;
}

Envelope MoneyService::load_auth(const Envelope& request) {
  const std::uint64_t id = request.request_id();
  const wire::LoadAuthRequest& m = request.load_auth();
  auto t = terminal(m.terminal_id());
  if (!t.is_ok()) return terminal_error(id, t.status());
  LoadAuthRequest r;
  r.order_id = m.order_id();
  protocol::load::LoadInit& in = r.init;
  const auto alg =
      m.algorithm_id() <= 0xFF
          ? protocol::crypto::algorithm_from_id(static_cast<std::uint8_t>(m.algorithm_id()))
          : std::nullopt;
  if (!pw::to_serial(m.card_serial(), r.card) || m.random().size() != 4 || m.mac1().size() != 4 ||
      !alg || m.key_version() > 0xFF || m.online_counter() > 0xFFFF || m.amount_fen() <= 0 ||
      m.amount_fen() > 0xFFFF'FFFFLL || m.balance_before_fen() < 0 ||
      m.balance_before_fen() > 0xFFFF'FFFFLL || m.txn_type() > 0xFF) {
    return error_reply(id, wire::MALFORMED,
                       "load request: serial 8, random 4, MAC1 4 bytes; known algorithm; fields "
                       "within the card's sizes");
  }
  in.algorithm = *alg;
  in.terminal = t->terminal_id;
  in.balance_before_fen = static_cast<std::uint32_t>(m.balance_before_fen());
  in.online_counter = static_cast<std::uint16_t>(m.online_counter());
  std::copy(m.random().begin(), m.random().end(), in.random.begin());
  std::copy(m.mac1().begin(), m.mac1().end(), in.mac1.begin());
  in.amount_fen = static_cast<std::uint32_t>(m.amount_fen());
  in.type = static_cast<std::uint8_t>(m.txn_type());
  r.key_version = static_cast<std::uint8_t>(m.key_version());
  auto a = recharge_.authorize_load(actor_of(*t), r);
  if (!a.is_ok()) return error_reply(id, a.status());
  Envelope e = reply_to(request);
  auto* reply = e.mutable_load_auth_reply();
  reply->set_order_id(a->order_id);
  reply->set_mac2(pw::field(a->mac2));
  reply->set_datetime(pw::field(a->datetime));
  reply->set_amount_fen(a->amount_fen);
  return e;
}

Envelope MoneyService::load_confirm(const Envelope& request) {
  const std::uint64_t id = request.request_id();
  const wire::LoadConfirm& m = request.load_confirm();
  auto t = terminal(m.terminal_id());
  if (!t.is_ok()) return terminal_error(id, t.status());
  const std::string actor = actor_of(*t);
  Envelope e = reply_to(request);
  auto* reply = e.mutable_load_confirm_reply();
  reply->set_order_id(m.order_id());
  if (m.aborted()) {
    auto o = recharge_.abort_load(actor, m.order_id(), m.reason());
    if (!o.is_ok()) return error_reply(id, o.status());
    reply->set_state(static_cast<wire::OrderState>(o->state));
    return e;
  }
  protocol::Mac4 tac{};
  if (!pw::to_mac(m.tac(), tac)) return error_reply(id, wire::MALFORMED, "TAC must be 4 bytes");
  auto c = recharge_.confirm_load(actor, m.order_id(), tac);
  if (!c.is_ok()) return error_reply(id, c.status());
  reply->set_state(wire::ORDER_LOADED);
  reply->set_balance_after_fen(c->balance_after_fen);
  reply->set_duplicate(c->duplicate);
  return e;
}

Envelope MoneyService::pending(const Envelope& request) {
  const std::uint64_t id = request.request_id();
  protocol::Serial8 serial{};
  if (!pw::to_serial(request.pending_query().card_serial(), serial)) {
    return error_reply(id, wire::MALFORMED, "card serial must be 8 bytes");
  }
  auto list = recharge_.pending_loads(serial);
  if (!list.is_ok()) return error_reply(id, list.status());
  Envelope e = reply_to(request);
  auto* reply = e.mutable_pending_list();
  reply->set_card_serial(pw::field(serial));
  for (const Order& o : *list) {
    auto* p = reply->add_loads();
    p->set_order_id(o.order_id);
    p->set_amount_fen(o.amount_fen);
    p->set_channel(static_cast<wire::Channel>(o.channel));
  }
  return e;
}

Envelope MoneyService::blacklist(const Envelope& request) {
  const std::uint64_t id = request.request_id();
  const wire::BlacklistRequest& m = request.blacklist_request();
  auto t = terminal(m.terminal_id());
  if (!t.is_ok()) return terminal_error(id, t.status());
  auto page = risk_.page(m.since_version(), m.full());
  if (!page.is_ok()) return error_reply(id, page.status());
  Envelope e = reply_to(request);
  auto* reply = e.mutable_blacklist_reply();
  reply->set_version(page->version);
  reply->set_latest_version(page->latest_version);
  reply->set_full(page->full);
  reply->set_reset(page->reset);
  reply->set_more(page->more);
  for (const auto& s : page->added) reply->add_added(pw::field(s));
  for (const auto& s : page->removed) reply->add_removed(pw::field(s));
  return e;
}

Envelope MoneyService::params(const Envelope& request) {
  const std::uint64_t id = request.request_id();
  auto t = terminal(request.params_request().terminal_id());
  if (!t.is_ok()) return terminal_error(id, t.status());
  auto page = fares_.page(request.params_request().since_version());
  if (!page.is_ok()) return error_reply(id, page.status());
  Envelope e = reply_to(request);
  *e.mutable_params_reply() = std::move(page).value();
  return e;
}

}  // namespace citycard::backend
