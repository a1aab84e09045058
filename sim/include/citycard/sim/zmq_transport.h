// ZeroMQ transport for wall-time runs: a ROUTER server that hands each request to a
// RequestHandler, and a DEALER client with a synchronous call and a timeout.
//
// The server sets ROUTER_MANDATORY (a reply to a peer that has gone is an error we count,
// not a silent drop), bounded high-water marks and ZMQ_MAXMSGSIZE (an oversized frame drops
// the offending connection; the codec's own limit catches the rest).
//
// Two ways to serve:
// - inline (ZmqServerOptions::max_pending_requests == 0, the default): serve() receives and
//   handles on the calling thread. When the handler falls behind, ZeroMQ's receive queue fills
//   to its high-water mark and pushes back on the clients' TCP connections; clients time out.
// - queued (max_pending_requests > 0): serve() starts an I/O thread that owns the socket and
//   accepts requests into a bounded queue; the calling thread takes them from the queue and runs
//   the handler. A request that finds the queue full (by count or by bytes) is answered at once
//   with ZmqServerOptions::refusal_reply(kBusy): an explicit BUSY, never a silent drop. A
//   GroupRequestHandler gets up to group_requests_max queued requests at once (the backend
//   commits a group of uploads with one fsync).
//
// CURVE (ZmqServerOptions::curve): the socket is a CURVE server, so traffic is encrypted and
// every client proves it holds the secret key of the public key it presents. A ZAP handler
// (RFC 27) on inproc://zeromq.zap.01 of the server's context asks a CurveAuthenticator whether
// that public key may connect; the user id it returns is attached by ZeroMQ to every message of
// the connection, and before each request the authenticator is asked again whether that user is
// still allowed (a certificate revoked after the handshake), the answer being
// refusal_reply(kPeerNotAllowed). libzmq without ZMQ_ZAP_ENFORCE_DOMAIN (a draft option)
// admits every CURVE client when no ZAP handler is bound, so the server binds its handler before
// its socket and keeps it until the socket is closed. One ZAP handler per context: a second
// CURVE server in the same context fails to bind.
//
// Threads: construct, bind() and read counters from any one thread; serve() on the thread that
// is to run the handler (the handler and on_tick are only ever called there); stop() from any
// thread or a signal handler. The authenticator is called from the ZAP thread and the I/O
// thread and must be thread-safe; refusal_reply is called from the I/O thread.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"
#include "citycard/sim/transport.h"

namespace citycard::sim {

// ---- CURVE keys ------------------------------------------------------------------------------

using CurveKey = std::array<std::uint8_t, 32>;

struct CurveKeyPair {
  CurveKey public_key{};
  CurveKey secret_key{};
};

// Whether this libzmq was built with CURVE (libsodium). Everything below needs it.
bool curve_available();
// A fresh key pair from libzmq (libsodium: the operating system's entropy, which is why key
// generation lives in sim/, the one folder that may read it).
Result<CurveKeyPair> generate_curve_key_pair();
// The public key that belongs to a secret key.
Result<CurveKey> curve_public_key(const CurveKey& secret_key);
// Z85 text of a key (40 characters), as ZeroMQ tools print keys; nullopt for bad text.
std::string z85_encode(const CurveKey& key);
std::optional<CurveKey> z85_decode(std::string_view text);

// What the ZAP handler asks about a connecting client.
struct ZapVerdict {
  bool allowed = false;
  std::string user_id;  // when allowed: who the peer is (ZeroMQ's "User-Id" of its messages)
  std::string reason;   // when refused: why, for the server's log
};

class CurveAuthenticator {
 public:
  virtual ~CurveAuthenticator() = default;
  // A client presenting `client_key` from `peer_address` is completing its handshake.
  virtual ZapVerdict authenticate(const CurveKey& client_key, const std::string& peer_address) = 0;
  // Before each request of a connection admitted as `user_id`: is it still allowed? When not,
  // `reason` says why.
  virtual bool still_allowed(const std::string& user_id, std::string& reason) = 0;
};

struct CurveServerOptions {
  CurveKeyPair server_keys;
  CurveAuthenticator* authenticator = nullptr;  // required; must outlive the server
  std::string zap_domain = "citycard";
};

struct CurveClientOptions {
  CurveKey server_public_key{};  // pinned: the client talks to this server only
  CurveKeyPair client_keys;
};

// Makes a client socket (DEALER, REQ...) a CURVE client; call before connect().
Status apply_curve_client(zmq::socket_t& socket, const CurveClientOptions& options);

// ---- Server ----------------------------------------------------------------------------------

// Why a request was answered without running the handler.
enum class Refusal {
  kBusy,            // the queue of pending requests is full: try again later
  kPeerNotAllowed,  // the peer's credentials were withdrawn after it connected
};

// A handler that can answer several requests together; replies[i] answers requests[i]. A reply
// may be empty: that request is not answered (see RequestHandler).
class GroupRequestHandler : public RequestHandler {
 public:
  virtual std::vector<Bytes> handle_group(std::span<const ByteView> requests) = 0;
};

struct ZmqServerOptions {
  int send_hwm = 10'000;
  int recv_hwm = 10'000;
  std::int64_t max_message_bytes = 8 << 20;
  int poll_interval_ms = 100;  // how often serve() looks at the stop flag

  // Queued serving (see the top of this file); 0 serves inline.
  std::size_t max_pending_requests = 0;
  std::size_t max_pending_bytes = 256u << 20;
  // With a GroupRequestHandler: requests handed over at once, at most.
  std::size_t group_requests_max = 1;
  // The reply to a request that is refused; required with max_pending_requests > 0 or curve.
  // Called on the I/O thread: it must be cheap and thread-safe.
  std::function<Bytes(ByteView request, Refusal refusal, const std::string& reason)> refusal_reply;
  // Called on the handler's thread between requests, at least every poll_interval_ms while
  // serving queued (housekeeping that must not race the handler).
  std::function<void()> on_tick;
  std::optional<CurveServerOptions> curve;
};

struct ZmqServerCounters {
  std::uint64_t requests = 0;               // handed to the handler
  std::uint64_t busy_replies = 0;           // refused with kBusy
  std::uint64_t not_allowed_replies = 0;    // refused with kPeerNotAllowed
  std::uint64_t unroutable_replies = 0;     // the peer had gone (ROUTER_MANDATORY)
  std::uint64_t undeliverable_replies = 0;  // the peer's queue was at its high-water mark
  std::uint64_t unanswered = 0;             // the handler gave an empty reply
  std::uint64_t malformed_requests = 0;     // without a routing envelope: dropped, counted
  std::uint64_t zap_allowed = 0;
  std::uint64_t zap_denied = 0;
  std::uint64_t pending_max = 0;  // the most requests that waited at once
};

class ZmqServer {
 public:
  ZmqServer(zmq::context_t& ctx, RequestHandler& handler, ZmqServerOptions options = {});
  ZmqServer(zmq::context_t& ctx, GroupRequestHandler& handler, ZmqServerOptions options);
  ~ZmqServer();
  ZmqServer(const ZmqServer&) = delete;
  ZmqServer& operator=(const ZmqServer&) = delete;

  // Binds; for "tcp://127.0.0.1:0" the OS picks a port and endpoint() tells which. With CURVE,
  // starts the ZAP handler first (kUnavailable if the context already has one).
  Status bind(const std::string& endpoint);
  std::string endpoint() const { return endpoint_; }

  // Serves on the calling thread until stop() is called (from any thread or a signal handler).
  // Queued: requests already accepted are handled and answered before serve() returns.
  void serve();
  void stop() { stop_.store(true); }

  std::uint64_t requests() const { return requests_.load(); }
  std::uint64_t unroutable_replies() const { return unroutable_.load(); }
  ZmqServerCounters counters() const;

 private:
  struct Pending {
    std::vector<zmq::message_t> envelope;  // routing frames, echoed before the reply
    zmq::message_t payload;
  };
  class ZapHandler;

  void serve_inline();
  void serve_queued();
  void io_loop(const std::string& reply_endpoint);
  void accept(std::vector<zmq::message_t>&& parts);
  void refuse(Pending& request, Refusal refusal, const std::string& reason);
  bool send_reply(std::vector<zmq::message_t>& envelope, ByteView reply);
  bool peer_allowed(const zmq::message_t& payload, std::string& reason);
  std::vector<Bytes> run_handler(std::span<const ByteView> requests);

  zmq::context_t& ctx_;
  zmq::socket_t socket_;
  RequestHandler& handler_;
  GroupRequestHandler* group_handler_;  // null for a plain RequestHandler
  ZmqServerOptions options_;
  std::string endpoint_;
  std::unique_ptr<ZapHandler> zap_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> unroutable_{0};
  std::atomic<std::uint64_t> undeliverable_{0};
  std::atomic<std::uint64_t> busy_{0};
  std::atomic<std::uint64_t> not_allowed_{0};
  std::atomic<std::uint64_t> unanswered_{0};
  std::atomic<std::uint64_t> malformed_{0};
  std::atomic<std::uint64_t> pending_max_{0};
  std::atomic<std::uint64_t> zap_allowed_{0};
  std::atomic<std::uint64_t> zap_denied_{0};

  // Queued mode: the I/O thread fills `queue_`, the handler's thread empties it.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  std::size_t queued_bytes_ = 0;
  bool io_done_ = false;  // the I/O thread reads no more requests
};

struct ZmqClientOptions {
  std::optional<CurveClientOptions> curve;
  std::int64_t max_message_bytes = 8 << 20;
};

// A synchronous client. Not thread-safe: one per thread.
class ZmqClient {
 public:
  ZmqClient(zmq::context_t& ctx, const std::string& endpoint);
  // With CURVE: a server that refuses the client's credentials makes call() fail with
  // kRejected (ZeroMQ reports the refusal as a handshake event) instead of a bare timeout, at
  // once when the last handshake was refused, until one succeeds.
  ZmqClient(zmq::context_t& ctx, const std::string& endpoint, const ZmqClientOptions& options);
  ~ZmqClient();
  Result<Bytes> call(ByteView request, int timeout_ms);
  // Replies that came after their call had timed out, and were discarded.
  std::uint64_t stale_replies() const { return stale_replies_; }

 private:
  void read_handshake_events();

  zmq::socket_t socket_;
  std::optional<zmq::socket_t> monitor_;  // handshake events, with CURVE
  std::optional<Status> refused_;         // the last handshake was refused by the server
  std::uint64_t next_correlation_ = 0;
  std::uint64_t stale_replies_ = 0;
};

}  // namespace citycard::sim
