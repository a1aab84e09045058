#include "citycard/sim/zmq_async_client.h"

#include <poll.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace citycard::sim {

ZmqAsyncClient::ZmqAsyncClient(zmq::context_t& ctx, const std::string& endpoint, const Clock& clock,
                               AsyncClientOptions options)
    : socket_(ctx, zmq::socket_type::dealer), clock_(clock), options_(options) {
  CITYCARD_CHECK(options_.in_flight_max > 0 && options_.timeout_us > 0,
                 "an async client needs room for a request and a positive timeout");
  socket_.set(zmq::sockopt::linger, 0);
  socket_.set(zmq::sockopt::sndhwm, options_.send_hwm);
  socket_.set(zmq::sockopt::rcvhwm, options_.recv_hwm);
  socket_.set(zmq::sockopt::maxmsgsize, options_.max_message_bytes);
  socket_.connect(endpoint);
  fd_ = socket_.get(zmq::sockopt::fd);
}

Status ZmqAsyncClient::send(ByteView request, ReplyFn on_reply) {
  if (pending_.size() >= options_.in_flight_max) {
    ++counters_.refused_in_flight;
    return Status(Errc::kTooLarge,
                  "in-flight limit of " + std::to_string(options_.in_flight_max) + " reached");
  }
  const std::uint64_t corr = ++next_correlation_;
  // Only the first part can be refused: once it is queued, ZeroMQ takes the rest of the
  // multipart message whole.
  if (!socket_.send(zmq::message_t(), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
    ++counters_.refused_send_queue;
    return Status(Errc::kUnavailable, "send queue full (server not keeping up)");
  }
  socket_.send(zmq::buffer(&corr, sizeof corr), zmq::send_flags::sndmore);
  socket_.send(zmq::buffer(request.data(), request.size()), zmq::send_flags::none);
  const std::int64_t deadline = clock_.now_us() + options_.timeout_us;
  pending_.emplace(corr, Pending{std::move(on_reply), deadline});
  deadlines_.emplace_back(deadline, corr);
  ++counters_.sent;
  return Status::ok();
}

bool ZmqAsyncClient::readable() {
  return (socket_.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0;
}

std::size_t ZmqAsyncClient::receive_ready() {
  std::size_t ran = 0;
  std::vector<zmq::message_t> parts;
  for (;;) {
    zmq::message_t first;
    if (!socket_.recv(first, zmq::recv_flags::dontwait)) break;
    parts.clear();
    parts.push_back(std::move(first));
    while (parts.back().more()) {
      zmq::message_t next;
      (void)socket_.recv(next, zmq::recv_flags::none);
      parts.push_back(std::move(next));
    }
    if (parts.size() != 3 || parts[0].size() != 0 || parts[1].size() != sizeof(std::uint64_t)) {
      ++counters_.malformed_replies;
      continue;
    }
    std::uint64_t corr;
    std::memcpy(&corr, parts[1].data(), sizeof corr);
    auto it = pending_.find(corr);
    if (it == pending_.end()) {
      ++counters_.stale_replies;
      continue;
    }
    ReplyFn fn = std::move(it->second.on_reply);
    pending_.erase(it);
    ++counters_.replies;
    const auto* p = static_cast<const std::uint8_t*>(parts[2].data());
    fn(Bytes(p, p + parts[2].size()), clock_.now_us());
    ++ran;
  }
  return ran;
}

std::size_t ZmqAsyncClient::expire(std::int64_t now_us) {
  std::size_t ran = 0;
  while (!deadlines_.empty()) {
    const auto [deadline, corr] = deadlines_.front();
    auto it = pending_.find(corr);
    if (it == pending_.end()) {  // answered already
      deadlines_.pop_front();
      continue;
    }
    if (deadline > now_us) break;
    deadlines_.pop_front();
    ReplyFn fn = std::move(it->second.on_reply);
    pending_.erase(it);
    ++counters_.timeouts;
    fn(Result<Bytes>(Errc::kTimeout,
                     "no reply within " + std::to_string(options_.timeout_us / 1000) + " ms"),
       now_us);
    ++ran;
  }
  return ran;
}

std::size_t ZmqAsyncClient::poll(std::int64_t until_us) {
  for (;;) {
    std::size_t ran = receive_ready();
    ran += expire(clock_.now_us());
    if (ran > 0) return ran;
    const std::int64_t now = clock_.now_us();
    std::int64_t wake = until_us;
    if (!deadlines_.empty()) wake = std::min(wake, deadlines_.front().first);
    if (now >= wake) return 0;
    // ZMQ_FD is edge-triggered: ask ZMQ_EVENTS before sleeping, or a reply that arrived
    // while we were busy would not wake us.
    if (readable()) continue;
    const std::int64_t wait_us = wake - now;
    timespec ts{static_cast<time_t>(wait_us / 1'000'000),
                static_cast<long>((wait_us % 1'000'000) * 1000)};
    pollfd pfd{fd_, POLLIN, 0};
    const int rc = ::ppoll(&pfd, 1, &ts, nullptr);
    CITYCARD_CHECK(rc >= 0 || errno == EINTR, "ppoll on a ZeroMQ socket failed");
    counters_.waited_us +=
        static_cast<std::uint64_t>(std::max<std::int64_t>(0, clock_.now_us() - now));
  }
}

}  // namespace citycard::sim
