#include "citycard/devices/online_load.h"

#include <algorithm>
#include <utility>

#include "citycard/devices/host_session.h"

namespace citycard::devices {

namespace pw = protocol::wire;
namespace wire = citycard::wire;
using wire::Envelope;

OnlineLoadClient::OnlineLoadClient(OnlineLoadOptions options, sim::Channel& channel)
    : options_(std::move(options)), channel_(channel) {}

OnlineLoadClient::~OnlineLoadClient() = default;

Result<Envelope> OnlineLoadClient::call(Envelope request) {
  if (!options_.pump) return Status(Errc::kInvalidArgument, "online load client needs a pump");
  const std::uint64_t id = next_request_id_++;
  request.set_request_id(id);
  ++requests_;
  Result<Envelope> e = pumped_call(channel_, request, options_.pump, options_.pump_rounds_max);
  if (e && e->has_error()) return status_of_error(e->error());
  return e;
}

Result<OrderStatus> OnlineLoadClient::place_order(const std::string& order_id,
                                                  wire::Channel channel,
                                                  const protocol::Serial8& card,
                                                  std::int64_t amount_fen, bool to_account,
                                                  const std::string& voucher) {
  Envelope e;
  auto* m = e.mutable_recharge_order();
  m->set_order_id(order_id);
  m->set_channel(channel);
  m->set_card_serial(pw::field(card));
  m->set_amount_fen(amount_fen);
  m->set_terminal_id(pw::field(options_.terminal_id));
  m->set_voucher_code(voucher);
  m->set_to_account(to_account);
  auto reply = call(std::move(e));
  if (!reply) return reply.status();
  if (!reply->has_recharge_order_reply()) {
    return Status(Errc::kMalformed, "reply to an order is not an order reply");
  }
  const auto& r = reply->recharge_order_reply();
  return OrderStatus{r.order_id(), r.state(), r.amount_fen(), r.failure()};
}

Result<std::vector<wire::PendingLoad>> OnlineLoadClient::pending(const protocol::Serial8& card) {
  Envelope e;
  e.mutable_pending_query()->set_card_serial(pw::field(card));
  auto reply = call(std::move(e));
  if (!reply) return reply.status();
  if (!reply->has_pending_list()) {
    return Status(Errc::kMalformed, "reply to a pending query is not a list");
  }
  return std::vector<wire::PendingLoad>(reply->pending_list().loads().begin(),
                                        reply->pending_list().loads().end());
}

Result<LoadApproval> OnlineLoadClient::authorise(const LoadAuthorisation& a) {
  authorised_ = false;
  if (order_id_.empty()) return Status(Errc::kInvalidArgument, "no order to authorise");
  Envelope e;
  auto* m = e.mutable_load_auth();
  m->set_order_id(order_id_);
  m->set_card_serial(pw::field(a.card_serial));
  m->set_amount_fen(a.amount_fen);
  m->set_terminal_id(pw::field(a.terminal));
  m->set_balance_before_fen(a.balance_before_fen);
  m->set_online_counter(a.online_counter);
  m->set_key_version(a.key_version);
  m->set_algorithm_id(a.algorithm_id);
  m->set_random(pw::field(a.card_random));
  m->set_mac1(pw::field(a.mac1));
  m->set_txn_type(protocol::txn::kLoadEp);
  auto reply = call(std::move(e));
  if (!reply) return reply.status();
  if (!reply->has_load_auth_reply()) {
    return Status(Errc::kMalformed, "reply to a load authorisation is not one");
  }
  const auto& r = reply->load_auth_reply();
  LoadApproval approval;
  protocol::DateTime7 when{};
  if (!pw::to_mac(r.mac2(), approval.mac2) || !pw::to_datetime(r.datetime(), when)) {
    return Status(Errc::kMalformed, "load authorisation: MAC2 4 bytes, date-time 7");
  }
  if (r.amount_fen() != a.amount_fen) {
    return Status(Errc::kMalformed, "load authorisation for " + std::to_string(r.amount_fen()) +
                                        " fen, asked " + std::to_string(a.amount_fen));
  }
  approval.datetime = when;
  authorised_ = true;
  return approval;
}

Result<wire::LoadConfirmReply> OnlineLoadClient::confirm(const std::string& order_id,
                                                         const protocol::Mac4& tac) {
  Envelope e;
  auto* m = e.mutable_load_confirm();
  m->set_order_id(order_id);
  m->set_tac(pw::field(tac));
  m->set_terminal_id(pw::field(options_.terminal_id));
  auto reply = call(std::move(e));
  if (!reply) return reply.status();
  if (!reply->has_load_confirm_reply()) {
    return Status(Errc::kMalformed, "reply to a confirmation is not one");
  }
  return reply->load_confirm_reply();
}

Result<wire::LoadConfirmReply> OnlineLoadClient::abort(const std::string& order_id,
                                                       const std::string& reason) {
  Envelope e;
  auto* m = e.mutable_load_confirm();
  m->set_order_id(order_id);
  m->set_aborted(true);
  m->set_reason(reason);
  m->set_terminal_id(pw::field(options_.terminal_id));
  auto reply = call(std::move(e));
  if (!reply) return reply.status();
  if (!reply->has_load_confirm_reply()) {
    return Status(Errc::kMalformed, "reply to an abort is not a confirmation reply");
  }
  return reply->load_confirm_reply();
}

// ---- RechargePoint ----

RechargePoint::RechargePoint(RechargePointOptions options, OnlineLoadClient& client,
                             const protocol::TerminalId& terminal)
    : options_(options), client_(client), engine_(terminal, client, options.load) {}

OnlineLoad RechargePoint::recharge(CardLink& card, const protocol::Serial8& serial,
                                   const std::string& order_id, std::uint32_t amount_fen,
                                   const protocol::DateTime7& datetime,
                                   std::optional<std::string> pin) {
  OnlineLoad out;
  out.order_id = order_id;
  for (std::size_t round = 0;; ++round) {
    auto order = client_.place_order(order_id, options_.channel, serial, amount_fen);
    if (!order) {
      out.status = order.status();
      return out;
    }
    if (order->state == wire::ORDER_PAID || order->state == wire::ORDER_AUTHORIZED) break;
    if (order->state == wire::ORDER_LOADED) {
      out.status = Status(Errc::kDuplicate, "order " + order_id + " is loaded already");
      return out;
    }
    if (order->state != wire::ORDER_CREATED) {
      out.status =
          Status(Errc::kRejected, "order " + order_id + " is " +
                                      wire::OrderState_Name(order->state) + ": " + order->failure);
      return out;
    }
    if (round >= options_.wait_paid_rounds_max) {
      out.status = Status(Errc::kTimeout, "the bank has not answered for order " + order_id);
      return out;
    }
  }
  return load_order(card, order_id, amount_fen, datetime, std::move(pin));
}

OnlineLoad RechargePoint::load_order(CardLink& card, const std::string& order_id,
                                     std::uint32_t amount_fen, const protocol::DateTime7& datetime,
                                     std::optional<std::string> pin) {
  OnlineLoad out;
  out.order_id = order_id;
  client_.set_order(order_id);
  out.result = engine_.load(card, LoadRequest{amount_fen, datetime, std::move(pin)});
  const bool authorised = client_.authorised();
  client_.set_order("");
  auto forget_doubt = [&] {
    std::erase_if(in_doubt_, [&](const Doubt& d) { return d.order_id == order_id; });
  };
  if (out.result.ok()) {
    forget_doubt();
    auto c = client_.confirm(order_id, out.result.load.tac);
    if (!c) {
      // The card has the money; the TAC did not reach the backend. The backend settles the
      // order by the card's online counter at its next load; the TAC can be sent again.
      out.status = c.status();
      return out;
    }
    out.confirmation = *c;
    out.status = Status::ok();
    return out;
  }
  out.status = Status(Errc::kRejected, out.result.detail);
  if (out.result.refusal == Refusal::kHostRefused) {
    out.status = Status(Errc::kRejected, "host refused: " + out.result.detail);
  }
  if (!authorised) return out;  // the backend issued nothing: the order stays PAID
  if (out.result.refusal == Refusal::kTorn) {
    out.in_doubt = true;
    if (std::none_of(in_doubt_.begin(), in_doubt_.end(),
                     [&](const Doubt& d) { return d.order_id == order_id; })) {
      in_doubt_.push_back(Doubt{order_id, amount_fen});
    }
    return out;
  }
  // The card answered CREDIT FOR LOAD with an error: it refused MAC2, nothing was credited.
  auto a = client_.abort(order_id, "card refused the credit: " + out.result.detail);
  if (!a) out.status = a.status();
  return out;
}

std::vector<OnlineLoad> RechargePoint::complete_pending(CardLink& card,
                                                        const protocol::Serial8& serial,
                                                        const protocol::DateTime7& datetime) {
  std::vector<OnlineLoad> done;
  const std::vector<Doubt> doubts = in_doubt_;
  std::vector<std::string> tried;
  for (const Doubt& d : doubts) {
    // A recovered grey load completes here (no second credit); a credit that never happened
    // is loaded now (the backend made the order PAID again from the counter).
    done.push_back(load_order(card, d.order_id, d.amount_fen, datetime));
    tried.push_back(d.order_id);
  }
  auto list = client_.pending(serial);
  if (!list) {
    OnlineLoad failed;
    failed.status = list.status();
    done.push_back(std::move(failed));
    return done;
  }
  for (const auto& p : *list) {
    if (std::find(tried.begin(), tried.end(), p.order_id()) != tried.end()) continue;
    if (p.amount_fen() <= 0 || p.amount_fen() > 0xFFFFFFFFLL) continue;
    done.push_back(
        load_order(card, p.order_id(), static_cast<std::uint32_t>(p.amount_fen()), datetime));
    if (!done.back().ok()) break;  // the card left, or refuses: try the rest next time
  }
  return done;
}

}  // namespace citycard::devices
