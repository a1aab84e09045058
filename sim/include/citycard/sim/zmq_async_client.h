// An asynchronous ZeroMQ client for load generation: one DEALER socket carrying many
// outstanding requests, from many simulated terminals, of one thread.
//
// Each request goes out as [empty delimiter][correlation (8 bytes)][payload]; sim::ZmqServer
// echoes every frame but the payload, so the reply comes back as [empty][correlation][reply]
// and is matched by the correlation, whatever its payload says. Requests have a timeout; a
// reply that comes after its request timed out is recognised and counted as stale, never taken
// for another request's answer.
//
// Limits, each counted when hit (never a silent drop):
// - at most in_flight_max requests outstanding: send() refuses more (Errc::kTooLarge);
// - the socket's send queue holds at most send_hwm messages: when the server does not keep up
//   and it is full, send() refuses (Errc::kUnavailable) instead of blocking the thread;
// - replies over max_message_bytes drop the connection (ZMQ_MAXMSGSIZE).
//
// poll() waits on the socket's file descriptor with microsecond timeouts (ppoll), so a load
// generator can sleep until its next planned send without spinning and without rounding to
// milliseconds.
//
// Threads: one thread owns the client: send(), poll() and the reply callbacks all run on it.
// The context and the clock must outlive the client. Destroying it with requests outstanding
// runs no callbacks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>

#include <zmq.hpp>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"
#include "citycard/sim/clock.h"

namespace citycard::sim {

struct AsyncClientOptions {
  std::size_t in_flight_max = 10'000;
  std::int64_t timeout_us = 5'000'000;
  int send_hwm = 20'000;
  int recv_hwm = 20'000;
  std::int64_t max_message_bytes = 8 << 20;
};

struct AsyncClientCounters {
  std::uint64_t sent = 0;
  std::uint64_t replies = 0;  // matched to an outstanding request
  std::uint64_t timeouts = 0;
  std::uint64_t stale_replies = 0;       // came after their request had timed out
  std::uint64_t malformed_replies = 0;   // not [empty][correlation][payload]: skipped
  std::uint64_t refused_in_flight = 0;   // send() at in_flight_max
  std::uint64_t refused_send_queue = 0;  // send() with the socket's send queue full
  std::uint64_t waited_us = 0;           // time poll() spent asleep: the rest was work
};

class ZmqAsyncClient {
 public:
  // The reply, or Errc::kTimeout; `now_us` is the clock's time when the outcome was seen.
  using ReplyFn = std::function<void(Result<Bytes> reply, std::int64_t now_us)>;

  ZmqAsyncClient(zmq::context_t& ctx, const std::string& endpoint, const Clock& clock,
                 AsyncClientOptions options = {});
  ZmqAsyncClient(const ZmqAsyncClient&) = delete;
  ZmqAsyncClient& operator=(const ZmqAsyncClient&) = delete;

  // Sends now. On refusal (see the limits above) returns the error and never calls on_reply;
  // otherwise on_reply runs exactly once, from a later poll().
  Status send(ByteView request, ReplyFn on_reply);

  // Runs the callbacks of replies that have arrived and of requests that have timed out. When
  // there are none yet, waits until there are, or until the clock reads `until_us`. Returns
  // how many callbacks ran.
  std::size_t poll(std::int64_t until_us);

  std::size_t in_flight() const { return pending_.size(); }
  const AsyncClientCounters& counters() const { return counters_; }
  const AsyncClientOptions& options() const { return options_; }

 private:
  struct Pending {
    ReplyFn on_reply;
    std::int64_t deadline_us;
  };
  std::size_t receive_ready();
  std::size_t expire(std::int64_t now_us);
  bool readable();

  zmq::socket_t socket_;
  const Clock& clock_;
  AsyncClientOptions options_;
  int fd_ = -1;
  std::uint64_t next_correlation_ = 0;
  std::unordered_map<std::uint64_t, Pending> pending_;
  // Correlations in send order. The timeout is the same for all, so this is deadline order;
  // entries already answered are skipped when they reach the front.
  std::deque<std::pair<std::int64_t, std::uint64_t>> deadlines_;
  AsyncClientCounters counters_;
};

}  // namespace citycard::sim
