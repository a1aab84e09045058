#include "citycard/sim/zmq_async_client.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "citycard/sim/zmq_transport.h"

namespace citycard::sim {
namespace {

class Echo : public RequestHandler {
 public:
  Bytes handle(ByteView req) override { return Bytes(req.begin(), req.end()); }
};

// A ROUTER that takes requests and answers only when told to: for timeouts and stale replies.
class SilentServer {
 public:
  explicit SilentServer(zmq::context_t& ctx) : socket_(ctx, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
  }
  const std::string& endpoint() const { return endpoint_; }
  // Blocks until a request arrives (bounded by a receive timeout); keeps its envelope.
  bool take_request() {
    socket_.set(zmq::sockopt::rcvtimeo, 5000);
    std::vector<zmq::message_t> parts;
    do {
      zmq::message_t m;
      if (!socket_.recv(m)) return false;
      parts.push_back(std::move(m));
    } while (parts.back().more());
    held_.push_back(std::move(parts));
    return true;
  }
  void answer_all() {
    for (auto& parts : held_) {
      for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        socket_.send(parts[i], zmq::send_flags::sndmore);
      }
      socket_.send(zmq::str_buffer("late"), zmq::send_flags::none);
    }
    held_.clear();
  }

 private:
  zmq::socket_t socket_;
  std::string endpoint_;
  std::vector<std::vector<zmq::message_t>> held_;
};

TEST(ZmqAsyncClient, ManyOutstandingRequestsEachGetTheirOwnReply) {
  zmq::context_t ctx;
  Echo echo;
  ZmqServer server(ctx, echo);
  ASSERT_TRUE(server.bind("tcp://127.0.0.1:*").is_ok());
  std::thread t([&] { server.serve(); });
  WallClock clock;
  ZmqAsyncClient client(ctx, server.endpoint(), clock);
  constexpr int kRequests = 2000;
  std::vector<int> got(kRequests, 0);
  int replies = 0;
  for (int i = 0; i < kRequests; ++i) {
    const Bytes req{static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)};
    ASSERT_TRUE(client
                    .send(req,
                          [&, i, req](Result<Bytes> r, std::int64_t) {
                            ++replies;
                            ASSERT_TRUE(r.is_ok()) << r.status().to_string();
                            EXPECT_EQ(*r, req);
                            ++got[static_cast<std::size_t>(i)];
                          })
                    .is_ok());
  }
  EXPECT_EQ(client.in_flight(), static_cast<std::size_t>(kRequests));
  // Bounded: every request times out after 5 s at the latest, so this loop ends.
  while (client.in_flight() > 0) client.poll(clock.now_us() + 1'000'000);
  server.stop();
  t.join();
  EXPECT_EQ(replies, kRequests);
  for (int i = 0; i < kRequests; ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)], 1) << i;
  EXPECT_EQ(client.counters().replies, static_cast<std::uint64_t>(kRequests));
  EXPECT_EQ(client.counters().timeouts, 0u);
}

TEST(ZmqAsyncClient, TimesOutAndCountsTheLateReplyAsStale) {
  zmq::context_t ctx;
  SilentServer server(ctx);
  WallClock clock;
  AsyncClientOptions o;
  o.timeout_us = 20'000;
  ZmqAsyncClient client(ctx, server.endpoint(), clock, o);
  std::optional<Status> outcome;
  std::int64_t sent_at = clock.now_us(), seen_at = 0;
  ASSERT_TRUE(client
                  .send(Bytes{1},
                        [&](Result<Bytes> r, std::int64_t now) {
                          outcome = r.status();
                          seen_at = now;
                        })
                  .is_ok());
  ASSERT_TRUE(server.take_request());
  while (!outcome) client.poll(clock.now_us() + 1'000'000);
  EXPECT_EQ(outcome->code(), Errc::kTimeout);
  EXPECT_GE(seen_at - sent_at, 20'000);
  EXPECT_EQ(client.in_flight(), 0u);

  server.answer_all();
  const std::int64_t give_up = clock.now_us() + 5'000'000;
  while (client.counters().stale_replies == 0 && clock.now_us() < give_up) {
    client.poll(clock.now_us() + 10'000);
  }
  EXPECT_EQ(client.counters().stale_replies, 1u);
  EXPECT_EQ(client.counters().timeouts, 1u);
}

TEST(ZmqAsyncClient, RefusesOverTheInFlightLimit) {
  zmq::context_t ctx;
  SilentServer server(ctx);
  WallClock clock;
  AsyncClientOptions o;
  o.in_flight_max = 2;
  ZmqAsyncClient client(ctx, server.endpoint(), clock, o);
  auto ignore = [](Result<Bytes>, std::int64_t) {};
  EXPECT_TRUE(client.send(Bytes{1}, ignore).is_ok());
  EXPECT_TRUE(client.send(Bytes{2}, ignore).is_ok());
  const Status third = client.send(Bytes{3}, ignore);
  EXPECT_EQ(third.code(), Errc::kTooLarge);
  EXPECT_EQ(client.counters().refused_in_flight, 1u);
  EXPECT_EQ(client.counters().sent, 2u);
}

TEST(ZmqAsyncClient, RefusesWhenTheSendQueueIsFullInsteadOfBlocking) {
  zmq::context_t ctx;
  WallClock clock;
  AsyncClientOptions o;
  o.send_hwm = 10;
  o.in_flight_max = 1000;
  ZmqAsyncClient client(ctx, "tcp://127.0.0.1:1", clock, o);  // nothing listens on port 1
  int refused = 0;
  for (int i = 0; i < 200; ++i) {
    if (!client.send(Bytes{1}, [](Result<Bytes>, std::int64_t) {})) ++refused;
  }
  EXPECT_GT(refused, 0);
  EXPECT_EQ(client.counters().refused_send_queue, static_cast<std::uint64_t>(refused));
  EXPECT_EQ(client.counters().sent + static_cast<std::uint64_t>(refused), 200u);
}

}  // namespace
}  // namespace citycard::sim
