// Request/reply messaging between clients (terminals, tools) and a server (the backend).
// Devices and backend code see only these interfaces; the simulated network (virtual time)
// and ZeroMQ (wall time) implement them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"
#include "citycard/sim/event_loop.h"
#include "citycard/sim/rng.h"

namespace citycard::sim {

// Server side: one framed request in, one framed reply out. Called on the server's thread.
// An empty reply means the server did not answer (it is down): no reply is sent, and the
// client times out, as it would against a crashed server.
class RequestHandler {
 public:
  using DeferredReply = std::function<void(Bytes)>;
  virtual ~RequestHandler() = default;
  virtual Bytes handle(ByteView request) = 0;
  // The simulated network calls this one: a server may answer later (a group commit that
  // acknowledges only once its transaction is durable) by calling `reply` once, on the event
  // loop's thread, or never (an empty reply, or no call: the client times out). The default
  // answers at once with handle().
  virtual void handle_deferred(ByteView request, DeferredReply reply) { reply(handle(request)); }
};

// Client side. The reply callback runs exactly once, on the thread that drives the transport
// (the event loop's, for the simulated network): with the reply, or with an error (kTimeout
// when no reply came within the channel's timeout, kUnavailable when the link is down).
class Channel {
 public:
  using ReplyFn = std::function<void(Result<Bytes>)>;
  virtual ~Channel() = default;
  virtual void request(Bytes frame, ReplyFn on_reply) = 0;
};

// Fault knobs of the simulated network. Probabilities are per message, each way.
struct NetworkOptions {
  std::int64_t latency_us_mean = 40'000;     // GPRS-like one-way latency
  std::int64_t latency_us_jitter = 20'000;   // uniform +- jitter
  double loss_probability = 0.0;
  double duplicate_probability = 0.0;        // a request delivered to the server twice
  double reorder_probability = 0.0;          // a message held back by reorder_delay_us extra
  std::int64_t reorder_delay_us = 500'000;
  std::int64_t timeout_us = 5'000'000;       // client gives up after this
};

// A window in which every client whose name starts with `client_prefix` has no link (a GPRS
// outage, a partition): requests fail at once, and messages in flight to or from such a client
// are lost.
struct OutageWindow {
  std::string client_prefix;
  std::int64_t from_us = 0;
  std::int64_t to_us = 0;
};

// An in-process network in virtual time. Messages are delivered by scheduling events on the
// loop; loss turns into a timeout at the client. A client can be cut off by name (link down)
// or by an outage window, during which requests fail at once with kUnavailable.
class SimNetwork {
 public:
  SimNetwork(EventLoop& loop, Rng rng, NetworkOptions options);

  std::unique_ptr<Channel> connect(RequestHandler& server, std::string client_name);

  // Link state per client name; a down client gets kUnavailable at once.
  void set_link_up(const std::string& client_name, bool up);
  // False while the client is set down or inside one of its outage windows.
  bool link_up(const std::string& client_name) const;
  void add_outage(OutageWindow window) { outages_.push_back(std::move(window)); }

  // Knobs may change during a run (a scenario's faults{} after city{}).
  void set_options(const NetworkOptions& options) { options_ = options; }
  const NetworkOptions& options() const { return options_; }
  std::uint64_t messages_sent() const { return sent_; }
  std::uint64_t messages_lost() const { return lost_; }
  std::uint64_t messages_duplicated() const { return duplicated_; }
  std::uint64_t messages_reordered() const { return reordered_; }
  std::uint64_t unanswered() const { return unanswered_; }  // the server gave no reply

 private:
  class SimChannel;
  std::int64_t delay_us();  // one way, with jitter and the reorder knob

  EventLoop& loop_;
  Rng rng_;
  NetworkOptions options_;
  std::vector<std::string> down_;
  std::vector<OutageWindow> outages_;
  std::uint64_t sent_ = 0;
  std::uint64_t lost_ = 0;
  std::uint64_t duplicated_ = 0;
  std::uint64_t reordered_ = 0;
  std::uint64_t unanswered_ = 0;
};

}  // namespace citycard::sim
