#include "citycard/sim/zmq_transport.h"

#include <chrono>
#include <cstring>
#include <vector>

namespace citycard::sim {

ZmqServer::ZmqServer(zmq::context_t& ctx, RequestHandler& handler, ZmqServerOptions options)
    : socket_(ctx, zmq::socket_type::router), handler_(handler), options_(options) {
  socket_.set(zmq::sockopt::router_mandatory, 1);
  socket_.set(zmq::sockopt::sndhwm, options_.send_hwm);
  socket_.set(zmq::sockopt::rcvhwm, options_.recv_hwm);
  socket_.set(zmq::sockopt::maxmsgsize, options_.max_message_bytes);
  socket_.set(zmq::sockopt::linger, 0);
}

Status ZmqServer::bind(const std::string& endpoint) {
  try {
    socket_.bind(endpoint);
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Status(Errc::kUnavailable, "cannot bind " + endpoint + ": " + e.what());
  }
  return Status::ok();
}

void ZmqServer::serve() {
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
      if (parts.size() < 2) continue;
      const zmq::message_t& payload = parts.back();
      ++requests_;
      Bytes reply = handler_.handle(
          ByteView(static_cast<const std::uint8_t*>(payload.data()), payload.size()));
      if (reply.empty()) continue;  // the handler chose not to answer (see RequestHandler)
      try {
        for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
          socket_.send(zmq::buffer(parts[i].data(), parts[i].size()), zmq::send_flags::sndmore);
        }
        socket_.send(zmq::buffer(reply), zmq::send_flags::none);
      } catch (const zmq::error_t& e) {
        if (e.num() != EHOSTUNREACH) throw;
        ++unroutable_;  // the client has gone; counted, not silently dropped
      }
    }
  }
}

ZmqClient::ZmqClient(zmq::context_t& ctx, const std::string& endpoint)
    : socket_(ctx, zmq::socket_type::dealer) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.connect(endpoint);
}

// Each call carries a correlation frame that the server echoes back (it echoes every frame
// but the payload). A reply that arrives after its call timed out is recognised by it and
// discarded, so it can never be taken for the answer to a later call.
Result<Bytes> ZmqClient::call(ByteView request, int timeout_ms) {
  const std::uint64_t corr = ++next_correlation_;
  socket_.send(zmq::message_t(), zmq::send_flags::sndmore);
  socket_.send(zmq::buffer(&corr, sizeof corr), zmq::send_flags::sndmore);
  socket_.send(zmq::buffer(request.data(), request.size()), zmq::send_flags::none);
  zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    zmq::poll(items, 1, left);
    if (!(items[0].revents & ZMQ_POLLIN)) {
      return Result<Bytes>(Errc::kTimeout,
                           "no reply within " + std::to_string(timeout_ms) + " ms");
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
