// ZeroMQ transport for wall-time runs: a ROUTER server that hands each request to a
// RequestHandler, and a DEALER client with a synchronous call and a timeout.
//
// The server sets ROUTER_MANDATORY (a reply to a peer that has gone is an error we count,
// not a silent drop), bounded high-water marks and ZMQ_MAXMSGSIZE (an oversized frame drops
// the offending connection; the codec's own limit catches the rest).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <zmq.hpp>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"
#include "citycard/sim/transport.h"

namespace citycard::sim {

struct ZmqServerOptions {
  int send_hwm = 10'000;
  int recv_hwm = 10'000;
  std::int64_t max_message_bytes = 8 << 20;
  int poll_interval_ms = 100;   // how often serve() looks at the stop flag
};

class ZmqServer {
 public:
  ZmqServer(zmq::context_t& ctx, RequestHandler& handler, ZmqServerOptions options = {});
  // Binds; for "tcp://127.0.0.1:0" the OS picks a port and endpoint() tells which.
  Status bind(const std::string& endpoint);
  std::string endpoint() const { return endpoint_; }

  // Serves on the calling thread until stop() is called (from any thread or a signal handler).
  void serve();
  void stop() { stop_.store(true); }

  std::uint64_t requests() const { return requests_.load(); }
  std::uint64_t unroutable_replies() const { return unroutable_.load(); }

 private:
  zmq::socket_t socket_;
  RequestHandler& handler_;
  ZmqServerOptions options_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> unroutable_{0};
};

// A synchronous client. Not thread-safe: one per thread.
class ZmqClient {
 public:
  ZmqClient(zmq::context_t& ctx, const std::string& endpoint);
  Result<Bytes> call(ByteView request, int timeout_ms);
  // Replies that came after their call had timed out, and were discarded.
  std::uint64_t stale_replies() const { return stale_replies_; }

 private:
  zmq::socket_t socket_;
  std::uint64_t next_correlation_ = 0;
  std::uint64_t stale_replies_ = 0;
};

}  // namespace citycard::sim
