#include "citycard/sim/zmq_transport.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>
#include <vector>

namespace citycard::sim {

// ---- CURVE keys ------------------------------------------------------------------------------

bool curve_available() {
  return zmq_has("curve") != 0;
}

std::string z85_encode(const CurveKey& key) {
  char text[41] = {};
  if (zmq_z85_encode(text, key.data(), key.size()) == nullptr) return {};
  return std::string(text, 40);
}

std::optional<CurveKey> z85_decode(std::string_view text) {
  if (text.size() != 40) return std::nullopt;
  const std::string z(text);  // zmq_z85_decode wants a terminated string
  CurveKey key{};
  if (zmq_z85_decode(key.data(), z.c_str()) == nullptr) return std::nullopt;
  return key;
}

Result<CurveKeyPair> generate_curve_key_pair() {
  if (!curve_available()) return Status(Errc::kUnavailable, "libzmq has no CURVE support");
  char pub[41] = {}, sec[41] = {};
  if (zmq_curve_keypair(pub, sec) != 0) {
    return Status(Errc::kInternal, std::string("zmq_curve_keypair: ") + zmq_strerror(zmq_errno()));
  }
  CurveKeyPair pair;
  auto p = z85_decode(std::string_view(pub, 40));
  auto s = z85_decode(std::string_view(sec, 40));
  if (!p || !s) return Status(Errc::kInternal, "zmq_curve_keypair gave keys that do not decode");
  pair.public_key = *p;
  pair.secret_key = *s;
  return pair;
}

Result<CurveKey> curve_public_key(const CurveKey& secret_key) {
  if (!curve_available()) return Status(Errc::kUnavailable, "libzmq has no CURVE support");
  const std::string sec = z85_encode(secret_key);
  char pub[41] = {};
  if (zmq_curve_public(pub, sec.c_str()) != 0) {
    return Status(Errc::kInternal, std::string("zmq_curve_public: ") + zmq_strerror(zmq_errno()));
  }
  return *z85_decode(std::string_view(pub, 40));
}

Status apply_curve_client(zmq::socket_t& socket, const CurveClientOptions& o) {
  if (!curve_available()) return Status(Errc::kUnavailable, "libzmq has no CURVE support");
  void* s = socket.handle();
  if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, o.server_public_key.data(), 32) != 0 ||
      zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, o.client_keys.public_key.data(), 32) != 0 ||
      zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, o.client_keys.secret_key.data(), 32) != 0) {
    return Status(Errc::kInternal,
                  std::string("setting CURVE client keys: ") + zmq_strerror(zmq_errno()));
  }
  return Status::ok();
}

// ---- ZAP handler -----------------------------------------------------------------------------

// Answers ZAP requests (RFC 27) from the context's CURVE sockets on its own thread by asking
// the authenticator. Anything it cannot parse is refused: a ZAP handler fails closed.
class ZmqServer::ZapHandler {
 public:
  ZapHandler(zmq::context_t& ctx, CurveAuthenticator& auth, std::atomic<std::uint64_t>& allowed,
             std::atomic<std::uint64_t>& denied)
      : socket_(ctx, zmq::socket_type::rep), auth_(auth), allowed_(allowed), denied_(denied) {
    socket_.set(zmq::sockopt::linger, 0);
  }
  ~ZapHandler() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

  Status start() {
    try {
      socket_.bind("inproc://zeromq.zap.01");
    } catch (const zmq::error_t& e) {
      return Status(Errc::kUnavailable,
                    std::string("cannot start the ZAP handler (one per context): ") + e.what());
    }
    thread_ = std::thread([this] { run(); });
    return Status::ok();
  }

 private:
  void run() {
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
    while (!stop_.load()) {
      try {
        zmq::poll(items, 1, std::chrono::milliseconds(100));
        if (!(items[0].revents & ZMQ_POLLIN)) continue;
        std::vector<zmq::message_t> req;
        do {
          zmq::message_t m;
          (void)socket_.recv(m, zmq::recv_flags::none);
          req.push_back(std::move(m));
        } while (req.back().more());
        answer(req);
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM) return;
        if (e.num() != EINTR) throw;
      }
    }
  }

  void answer(const std::vector<zmq::message_t>& req) {
    // version, request id, domain, address, routing id, mechanism, credentials...
    std::string status = "400", text = "malformed ZAP request", user_id;
    const std::string request_id = req.size() > 1 ? req[1].to_string() : std::string();
    if (req.size() >= 7 && req[0].to_string_view() == "1.0") {
      const std::string address = req[3].to_string();
      if (req[5].to_string_view() != "CURVE" || req[6].size() != 32) {
        text = "only CURVE clients are served";
      } else {
        CurveKey key{};
        std::memcpy(key.data(), req[6].data(), key.size());
        ZapVerdict v;
        try {
          v = auth_.authenticate(key, address);
        } catch (const std::exception& e) {
          v = ZapVerdict{false, "", std::string("authenticator failed: ") + e.what()};
        }
        if (v.allowed) {
          status = "200";
          text = "OK";
          user_id = v.user_id;
        } else {
          text = v.reason.empty() ? "refused" : v.reason;
        }
      }
    }
    (status == "200" ? allowed_ : denied_)++;
    // The status text travels back to libzmq only; keep it short.
    if (text.size() > 200) text.resize(200);
    socket_.send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(request_id), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(status), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(text), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(user_id), zmq::send_flags::sndmore);
    socket_.send(zmq::message_t(), zmq::send_flags::none);  // no metadata
  }

  zmq::socket_t socket_;
  CurveAuthenticator& auth_;
  std::atomic<std::uint64_t>& allowed_;
  std::atomic<std::uint64_t>& denied_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// ---- ZmqServer -------------------------------------------------------------------------------

ZmqServer::ZmqServer(zmq::context_t& ctx, RequestHandler& handler, ZmqServerOptions options)
    : ctx_(ctx),
      socket_(ctx, zmq::socket_type::router),
      handler_(handler),
      group_handler_(nullptr),
      options_(std::move(options)) {
  CITYCARD_CHECK(options_.max_pending_requests == 0 || options_.refusal_reply,
                 "a queued ZmqServer needs a refusal_reply to answer BUSY");
  CITYCARD_CHECK(!options_.curve || (options_.curve->authenticator && options_.refusal_reply),
                 "a CURVE ZmqServer needs an authenticator and a refusal_reply");
  CITYCARD_CHECK(
      options_.max_pending_requests == 0 ||
          options_.max_pending_bytes >= static_cast<std::size_t>(options_.max_message_bytes),
      "max_pending_bytes must hold at least one message of max_message_bytes");
  CITYCARD_CHECK(options_.group_requests_max >= 1, "group_requests_max must be at least 1");
  socket_.set(zmq::sockopt::router_mandatory, 1);
  socket_.set(zmq::sockopt::sndhwm, options_.send_hwm);
  socket_.set(zmq::sockopt::rcvhwm, options_.recv_hwm);
  socket_.set(zmq::sockopt::maxmsgsize, options_.max_message_bytes);
  socket_.set(zmq::sockopt::linger, 0);
}

ZmqServer::ZmqServer(zmq::context_t& ctx, GroupRequestHandler& handler, ZmqServerOptions options)
    : ZmqServer(ctx, static_cast<RequestHandler&>(handler), std::move(options)) {
  group_handler_ = &handler;
}

ZmqServer::~ZmqServer() {
  // The socket must close before the ZAP handler goes, so that no handshake can slip through
  // without one (see the top of the header).
  socket_.close();
  zap_.reset();
}

ZmqServerCounters ZmqServer::counters() const {
  ZmqServerCounters c;
  c.requests = requests_.load();
  c.busy_replies = busy_.load();
  c.not_allowed_replies = not_allowed_.load();
  c.unroutable_replies = unroutable_.load();
  c.undeliverable_replies = undeliverable_.load();
  c.unanswered = unanswered_.load();
  c.malformed_requests = malformed_.load();
  c.zap_allowed = zap_allowed_.load();
  c.zap_denied = zap_denied_.load();
  c.pending_max = pending_max_.load();
  return c;
}

Status ZmqServer::bind(const std::string& endpoint) {
  if (options_.curve && !zap_) {
    if (!curve_available()) return Status(Errc::kUnavailable, "libzmq has no CURVE support");
    zap_ = std::make_unique<ZapHandler>(ctx_, *options_.curve->authenticator, zap_allowed_,
                                        zap_denied_);
    if (Status s = zap_->start(); !s.is_ok()) {
      zap_.reset();
      return s;
    }
    const CurveServerOptions& c = *options_.curve;
    void* s = socket_.handle();
    const int one = 1;
    if (zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c.server_keys.secret_key.data(), 32) != 0 ||
        zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, c.zap_domain.data(), c.zap_domain.size()) != 0) {
      return Status(Errc::kInternal,
                    std::string("setting CURVE server options: ") + zmq_strerror(zmq_errno()));
    }
  }
  try {
    socket_.bind(endpoint);
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Status(Errc::kUnavailable, "cannot bind " + endpoint + ": " + e.what());
  }
  return Status::ok();
}

bool ZmqServer::send_reply(std::vector<zmq::message_t>& envelope, ByteView reply) {
  try {
    for (std::size_t i = 0; i < envelope.size(); ++i) {
      const auto flags = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
      if (!socket_.send(envelope[i], flags)) {
        // Only the first frame can meet a full queue; ZeroMQ then takes the message whole.
        ++undeliverable_;
        return false;
      }
    }
    (void)socket_.send(zmq::buffer(reply.data(), reply.size()), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    if (e.num() != EHOSTUNREACH) throw;
    ++unroutable_;  // the client has gone; counted, not silently dropped
    return false;
  }
  return true;
}

bool ZmqServer::peer_allowed(const zmq::message_t& payload, std::string& reason) {
  if (!options_.curve) return true;
  const char* user_id = zmq_msg_gets(const_cast<zmq_msg_t*>(payload.handle()), "User-Id");
  if (user_id == nullptr) {
    reason = "the connection has no authenticated user";
    return false;
  }
  return options_.curve->authenticator->still_allowed(user_id, reason);
}

void ZmqServer::refuse(Pending& request, Refusal refusal, const std::string& reason) {
  (refusal == Refusal::kBusy ? busy_ : not_allowed_)++;
  const Bytes reply = options_.refusal_reply(
      ByteView(static_cast<const std::uint8_t*>(request.payload.data()), request.payload.size()),
      refusal, reason);
  (void)send_reply(request.envelope, reply);
}

std::vector<Bytes> ZmqServer::run_handler(std::span<const ByteView> requests) {
  requests_ += requests.size();
  if (group_handler_ != nullptr && requests.size() > 1) {
    std::vector<Bytes> replies = group_handler_->handle_group(requests);
    CITYCARD_CHECK(replies.size() == requests.size(), "a group handler must answer every request");
    return replies;
  }
  std::vector<Bytes> replies;
  replies.reserve(requests.size());
  for (ByteView r : requests) replies.push_back(handler_.handle(r));
  return replies;
}

void ZmqServer::serve() {
  if (options_.max_pending_requests == 0) {
    serve_inline();
  } else {
    serve_queued();
  }
}

void ZmqServer::serve_inline() {
  zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
  while (!stop_.load()) {
    try {
      zmq::poll(items, 1, std::chrono::milliseconds(options_.poll_interval_ms));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    // Drain everything that is ready before polling again.
    while (!stop_.load()) {
      std::vector<zmq::message_t> parts;
      zmq::message_t part;
      auto got = socket_.recv(part, zmq::recv_flags::dontwait);
      if (!got) break;
      parts.push_back(std::move(part));
      while (parts.back().more()) {
        zmq::message_t next;
        (void)socket_.recv(next, zmq::recv_flags::none);
        parts.push_back(std::move(next));
      }
      // DEALER clients send [empty delimiter, payload]; ROUTER prefixes the identity.
      if (parts.size() < 2) {
        ++malformed_;
        continue;
      }
      Pending p;
      p.payload = std::move(parts.back());
      parts.pop_back();
      p.envelope = std::move(parts);
      std::string reason;
      if (!peer_allowed(p.payload, reason)) {
        refuse(p, Refusal::kPeerNotAllowed, reason);
        continue;
      }
      const ByteView request(static_cast<const std::uint8_t*>(p.payload.data()), p.payload.size());
      Bytes reply = std::move(run_handler(std::span<const ByteView>(&request, 1)).front());
      if (reply.empty()) {  // the handler chose not to answer (see RequestHandler)
        ++unanswered_;
        continue;
      }
      (void)send_reply(p.envelope, reply);
    }
  }
}

// ---- queued serving --------------------------------------------------------------------------

namespace {
// A message from the handler's thread to the I/O thread that is not a reply: the last one.
bool is_end_marker(const std::vector<zmq::message_t>& parts) {
  return parts.size() == 1 && parts[0].size() == 0;
}
constexpr std::size_t kReadsPerTurn = 1'024;  // then replies get their turn
}  // namespace

void ZmqServer::accept(std::vector<zmq::message_t>&& parts) {
  if (parts.size() < 2) {
    ++malformed_;
    return;
  }
  Pending p;
  p.payload = std::move(parts.back());
  parts.pop_back();
  p.envelope = std::move(parts);
  std::string reason;
  if (!peer_allowed(p.payload, reason)) {
    refuse(p, Refusal::kPeerNotAllowed, reason);
    return;
  }
  const std::size_t bytes = p.payload.size();
  std::size_t waiting = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!io_done_ && queue_.size() < options_.max_pending_requests &&
        queued_bytes_ + bytes <= options_.max_pending_bytes) {
      queue_.push_back(std::move(p));
      queued_bytes_ += bytes;
      waiting = queue_.size();
    } else {
      waiting = queue_.size();
      reason = io_done_ ? "the server is stopping"
                        : std::to_string(waiting) + " requests (" + std::to_string(queued_bytes_) +
                              " bytes) are waiting; the limits are " +
                              std::to_string(options_.max_pending_requests) + " requests and " +
                              std::to_string(options_.max_pending_bytes) + " bytes";
    }
  }
  if (!reason.empty()) {
    refuse(p, Refusal::kBusy, reason);
    return;
  }
  if (waiting > pending_max_.load()) pending_max_.store(waiting);
  cv_.notify_one();
}

void ZmqServer::io_loop(const std::string& reply_endpoint) {
  zmq::socket_t from_handler(ctx_, zmq::socket_type::pair);
  from_handler.set(zmq::sockopt::rcvhwm, 0);  // bounded by max_pending_requests upstream
  from_handler.set(zmq::sockopt::linger, 0);
  from_handler.connect(reply_endpoint);
  zmq::pollitem_t items[] = {{from_handler.handle(), 0, ZMQ_POLLIN, 0},
                             {socket_.handle(), 0, ZMQ_POLLIN, 0}};
  bool stopping = false;
  for (;;) {
    if (!stopping && stop_.load()) {
      // From now on every request is answered BUSY; the handler finishes what it has.
      stopping = true;
      {
        std::lock_guard<std::mutex> lock(mu_);
        io_done_ = true;
      }
      cv_.notify_all();
    }
    try {
      zmq::poll(items, 2, std::chrono::milliseconds(options_.poll_interval_ms));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if (items[0].revents & ZMQ_POLLIN) {
      for (;;) {
        std::vector<zmq::message_t> parts;
        zmq::message_t first;
        if (!from_handler.recv(first, zmq::recv_flags::dontwait)) break;
        parts.push_back(std::move(first));
        while (parts.back().more()) {
          zmq::message_t next;
          (void)from_handler.recv(next, zmq::recv_flags::none);
          parts.push_back(std::move(next));
        }
        if (is_end_marker(parts)) return;
        zmq::message_t reply = std::move(parts.back());
        parts.pop_back();
        (void)send_reply(parts,
                         ByteView(static_cast<const std::uint8_t*>(reply.data()), reply.size()));
      }
    }
    if (items[1].revents & ZMQ_POLLIN) {
      for (std::size_t n = 0; n < kReadsPerTurn; ++n) {
        std::vector<zmq::message_t> parts;
        zmq::message_t first;
        if (!socket_.recv(first, zmq::recv_flags::dontwait)) break;
        parts.push_back(std::move(first));
        while (parts.back().more()) {
          zmq::message_t next;
          (void)socket_.recv(next, zmq::recv_flags::none);
          parts.push_back(std::move(next));
        }
        accept(std::move(parts));
      }
    }
  }
}

void ZmqServer::serve_queued() {
  const std::string reply_endpoint = "inproc://citycard-zmqserver-replies-" +
                                     std::to_string(reinterpret_cast<std::uintptr_t>(this));
  zmq::socket_t to_io(ctx_, zmq::socket_type::pair);
  to_io.set(zmq::sockopt::sndhwm, 0);  // bounded by max_pending_requests upstream
  to_io.set(zmq::sockopt::linger, 0);
  to_io.bind(reply_endpoint);
  {
    std::lock_guard<std::mutex> lock(mu_);
    io_done_ = false;
  }
  std::thread io([this, reply_endpoint] { io_loop(reply_endpoint); });

  const auto interval = std::chrono::milliseconds(options_.poll_interval_ms);
  auto next_tick = std::chrono::steady_clock::now() + interval;
  std::vector<Pending> work;
  std::vector<ByteView> requests;
  for (;;) {
    work.clear();
    bool finished = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, interval, [this] { return !queue_.empty() || io_done_; });
      while (!queue_.empty() && work.size() < options_.group_requests_max) {
        queued_bytes_ -= queue_.front().payload.size();
        work.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      finished = work.empty() && io_done_;
    }
    if (!work.empty()) {
      requests.clear();
      for (const Pending& p : work) {
        requests.emplace_back(static_cast<const std::uint8_t*>(p.payload.data()), p.payload.size());
      }
      std::vector<Bytes> replies = run_handler(requests);
      for (std::size_t i = 0; i < work.size(); ++i) {
        if (replies[i].empty()) {
          ++unanswered_;
          continue;
        }
        for (zmq::message_t& frame : work[i].envelope) {
          to_io.send(frame, zmq::send_flags::sndmore);
        }
        to_io.send(zmq::buffer(replies[i]), zmq::send_flags::none);
      }
    }
    if (options_.on_tick && std::chrono::steady_clock::now() >= next_tick) {
      options_.on_tick();
      next_tick = std::chrono::steady_clock::now() + interval;
    }
    if (finished) break;
  }
  to_io.send(zmq::message_t(), zmq::send_flags::none);  // the end marker
  io.join();
}

// ---- ZmqClient -------------------------------------------------------------------------------

ZmqClient::ZmqClient(zmq::context_t& ctx, const std::string& endpoint)
    : ZmqClient(ctx, endpoint, ZmqClientOptions{}) {}

ZmqClient::ZmqClient(zmq::context_t& ctx, const std::string& endpoint,
                     const ZmqClientOptions& options)
    : socket_(ctx, zmq::socket_type::dealer) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.set(zmq::sockopt::maxmsgsize, options.max_message_bytes);
  if (options.curve) {
    const Status s = apply_curve_client(socket_, *options.curve);
    CITYCARD_CHECK(s.is_ok(), "a CURVE client needs libzmq with CURVE (check curve_available())");
    const std::string monitor_endpoint = "inproc://citycard-zmqclient-monitor-" +
                                         std::to_string(reinterpret_cast<std::uintptr_t>(this));
    const int events = ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
    if (zmq_socket_monitor(socket_.handle(), monitor_endpoint.c_str(), events) == 0) {
      monitor_.emplace(ctx, zmq::socket_type::pair);
      monitor_->set(zmq::sockopt::linger, 0);
      monitor_->connect(monitor_endpoint);
    }
  }
  socket_.connect(endpoint);
}

ZmqClient::~ZmqClient() {
  if (monitor_) (void)zmq_socket_monitor(socket_.handle(), nullptr, 0);
}

// Reads the monitor's handshake events in order: the latest one says whether the server
// refused our credentials (ZAP), which then stays the answer until a handshake succeeds.
// Other handshake failures (a server with another key) are left to show as timeouts.
void ZmqClient::read_handshake_events() {
  for (;;) {
    zmq::message_t event, address;
    if (!monitor_->recv(event, zmq::recv_flags::dontwait)) return;
    if (event.more()) (void)monitor_->recv(address, zmq::recv_flags::none);
    if (event.size() < 6) continue;
    std::uint16_t id = 0;
    std::uint32_t value = 0;
    std::memcpy(&id, event.data(), sizeof id);
    std::memcpy(&value, static_cast<const std::uint8_t*>(event.data()) + 2, sizeof value);
    if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) refused_.reset();
    if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
      refused_ = Status(Errc::kRejected,
                        "the server refused this client's CURVE credentials (ZAP "
                        "status " +
                            std::to_string(value) + ")");
    }
  }
}

// Each call carries a correlation frame that the server echoes back (it echoes every frame
// but the payload). A reply that arrives after its call timed out is recognised by it and
// discarded, so it can never be taken for the answer to a later call.
Result<Bytes> ZmqClient::call(ByteView request, int timeout_ms) {
  if (monitor_) {
    read_handshake_events();
    // Refused at the last handshake: the request would wait for a connection that cannot be
    // made. (If a later handshake succeeds, its reply arrives as a stale one, and is dropped.)
    if (refused_) return *refused_;
  }
  const std::uint64_t corr = ++next_correlation_;
  socket_.send(zmq::message_t(), zmq::send_flags::sndmore);
  socket_.send(zmq::buffer(&corr, sizeof corr), zmq::send_flags::sndmore);
  socket_.send(zmq::buffer(request.data(), request.size()), zmq::send_flags::none);
  zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0},
                             {monitor_ ? monitor_->handle() : nullptr, 0, ZMQ_POLLIN, 0}};
  const int item_count = monitor_ ? 2 : 1;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    zmq::poll(items, item_count, left);
    if (item_count == 2 && (items[1].revents & ZMQ_POLLIN)) {
      read_handshake_events();
      if (refused_) return *refused_;
    }
    if (!(items[0].revents & ZMQ_POLLIN)) {
      if (std::chrono::steady_clock::now() < deadline) continue;
      return Result<Bytes>(Errc::kTimeout, "no reply within " + std::to_string(timeout_ms) + " ms");
    }
    std::vector<zmq::message_t> parts;
    do {
      zmq::message_t m;
      (void)socket_.recv(m, zmq::recv_flags::none);
      parts.push_back(std::move(m));
    } while (parts.back().more());
    if (parts.size() != 3 || parts[1].size() != sizeof corr) continue;  // not ours: skip
    std::uint64_t got;
    std::memcpy(&got, parts[1].data(), sizeof got);
    if (got != corr) {
      ++stale_replies_;
      continue;
    }
    const auto* p = static_cast<const std::uint8_t*>(parts[2].data());
    return Bytes(p, p + parts[2].size());
  }
}

}  // namespace citycard::sim
