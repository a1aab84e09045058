// The operations of a load run's workload mix.
//
// Two kinds:
// - "swipe": a rider taps a card on a bus validator. The purchase runs locally (card and PSAM
//   models, real MACs and TACs); its record joins the bus's upload queue, and the bus uploads
//   signed batches ("upload", the bulk workload the backend sees). The worker drives these.
// - request/response operations: one arrival is one request to the backend and one reply.
//   Each is a RequestOp below, registered in request_op_registry(). To add one when the
//   backend grows a message (POS online purchase, recharge authorisation, blacklist pull,
//   parameter pull): write a RequestOp that builds the request from the worker's cards and
//   terminals and judges the reply, and add it to the registry; the mix, the stats, the
//   summary and the agents pick it up by name.
//
// Threads: an op object belongs to one worker and is called on its thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "citycard/devices/cpu_card.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/rng.h"

namespace citycard::scenarios {

inline constexpr const char* kSwipeOp = "swipe";
inline constexpr const char* kUploadOp = "upload";
// The buses' last uploads after the schedule has ended, reported apart from "upload": every
// bus sends what it holds at once then, a burst that ends the run, not part of its load.
inline constexpr const char* kFlushOp = "flush";

// Where each op's stats are kept (LoadPlan::op_names()): swipe, upload, flush, then the
// request ops of the mix in order.
inline constexpr std::size_t kSwipeIndex = 0;
inline constexpr std::size_t kUploadIndex = 1;
inline constexpr std::size_t kFlushIndex = 2;
inline constexpr std::size_t kFirstRequestIndex = 3;

// What an op may use to build a request: the worker's share of the city.
struct OpContext {
  sim::Rng& rng;
  const std::vector<devices::CpuCard>& cards;
  const std::vector<protocol::TerminalId>& terminals;
};

class RequestOp {
 public:
  virtual ~RequestOp() = default;
  virtual const char* name() const = 0;
  // The request for one arrival; the worker sets its request_id.
  virtual citycard::wire::Envelope make(OpContext& ctx) = 0;
  // True when the reply is the success this op expects. An ErrorReply is never a success; its
  // code is counted by the worker.
  virtual bool succeeded(const citycard::wire::Envelope& reply) const = 0;
};

// BalanceQuery for a random card of the worker: the online transaction available today (a
// read of the card's account by the backend), standing in for POS online purchases.
class BalanceQueryOp final : public RequestOp {
 public:
  const char* name() const override { return "balance_query"; }
  citycard::wire::Envelope make(OpContext& ctx) override;
  bool succeeded(const citycard::wire::Envelope& reply) const override {
    return reply.has_balance_reply();
  }
};

// Ping: a terminal heartbeat; measures the transport and the server loop alone.
class PingOp final : public RequestOp {
 public:
  const char* name() const override { return "ping"; }
  citycard::wire::Envelope make(OpContext& ctx) override;
  bool succeeded(const citycard::wire::Envelope& reply) const override { return reply.has_pong(); }
};

struct RequestOpEntry {
  const char* name;
  std::function<std::unique_ptr<RequestOp>()> make;
};
const std::vector<RequestOpEntry>& request_op_registry();
bool is_request_op(const std::string& name);
std::unique_ptr<RequestOp> make_request_op(const std::string& name);  // null when unknown
std::string known_ops_text();  // "swipe, balance_query, ping"

}  // namespace citycard::scenarios
