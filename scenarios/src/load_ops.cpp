#include "load_ops.h"

namespace citycard::scenarios {

namespace pw = protocol::wire;

citycard::wire::Envelope BalanceQueryOp::make(OpContext& ctx) {
  citycard::wire::Envelope e;
  const auto& card = ctx.cards[static_cast<std::size_t>(ctx.rng.uniform(ctx.cards.size()))];
  e.mutable_balance_query()->set_card_serial(pw::field(card.serial()));
  return e;
}

citycard::wire::Envelope PingOp::make(OpContext& ctx) {
  citycard::wire::Envelope e;
  e.mutable_ping()->set_nonce(ctx.rng.next_u64());
  return e;
}

const std::vector<RequestOpEntry>& request_op_registry() {
  // New request/response operations are added here (see load_ops.h).
  static const std::vector<RequestOpEntry> kOps{
      {"balance_query", [] { return std::make_unique<BalanceQueryOp>(); }},
      {"ping", [] { return std::make_unique<PingOp>(); }},
  };
  return kOps;
}

bool is_request_op(const std::string& name) {
  for (const auto& e : request_op_registry()) {
    if (name == e.name) return true;
  }
  return false;
}

std::unique_ptr<RequestOp> make_request_op(const std::string& name) {
  for (const auto& e : request_op_registry()) {
    if (name == e.name) return e.make();
  }
  return nullptr;
}

std::string known_ops_text() {
  std::string s = kSwipeOp;
  for (const auto& e : request_op_registry()) s += std::string(", ") + e.name;
  return s;
}

}  // namespace citycard::scenarios
