#include "citycard/sim/transport.h"

#include <gtest/gtest.h>

namespace citycard::sim {
namespace {

NetworkOptions opts(std::int64_t latency_us, double loss, std::int64_t timeout_us) {
  NetworkOptions o;
  o.latency_us_mean = latency_us;
  o.latency_us_jitter = 0;
  o.loss_probability = loss;
  o.timeout_us = timeout_us;
  return o;
}

class Echo : public RequestHandler {
 public:
  Bytes handle(ByteView req) override {
    ++calls;
    return Bytes(req.begin(), req.end());
  }
  int calls = 0;
};

TEST(SimNetwork, DeliversAfterLatencyInVirtualTime) {
  EventLoop loop;
  Echo echo;
  SimNetwork net(loop, Rng(1), opts(1000, 0.0, 1'000'000));
  auto ch = net.connect(echo, "bus-1");
  std::int64_t answered_at = -1;
  Bytes got;
  ch->request({1, 2, 3}, [&](Result<Bytes> r) {
    ASSERT_TRUE(r.is_ok());
    got = *r;
    answered_at = loop.now_us();
  });
  loop.run();
  EXPECT_EQ(got, (Bytes{1, 2, 3}));
  EXPECT_EQ(answered_at, 2000);  // there and back
  EXPECT_EQ(echo.calls, 1);
}

TEST(SimNetwork, LossBecomesTimeoutAndTheCallbackRunsOnce) {
  EventLoop loop;
  Echo echo;
  SimNetwork net(loop, Rng(1), opts(1000, 1.0, 50'000));
  auto ch = net.connect(echo, "bus-1");
  int callbacks = 0;
  Errc code = Errc::kOk;
  ch->request({1}, [&](Result<Bytes> r) {
    ++callbacks;
    code = r.status().code();
  });
  loop.run();
  EXPECT_EQ(callbacks, 1);
  EXPECT_EQ(code, Errc::kTimeout);
  EXPECT_EQ(echo.calls, 0);
}

TEST(SimNetwork, LinkDownFailsAtOnce) {
  EventLoop loop;
  Echo echo;
  SimNetwork net(loop, Rng(1), NetworkOptions{});
  auto ch = net.connect(echo, "bus-9");
  net.set_link_up("bus-9", false);
  Errc code = Errc::kOk;
  ch->request({1}, [&](Result<Bytes> r) { code = r.status().code(); });
  EXPECT_EQ(code, Errc::kUnavailable);
  net.set_link_up("bus-9", true);
  bool ok = false;
  ch->request({1}, [&](Result<Bytes> r) { ok = r.is_ok(); });
  loop.run();
  EXPECT_TRUE(ok);
}

}  // namespace
}  // namespace citycard::sim

namespace citycard::sim {
namespace {

class Counter : public RequestHandler {
 public:
  Bytes handle(ByteView req) override {
    ++calls;
    return answer ? Bytes(req.begin(), req.end()) : Bytes{};
  }
  int calls = 0;
  bool answer = true;
};

// A server that answers later (a group commit): the reply leaves when it calls back, and a
// deferred reply that never comes is a timeout, as against a crashed server.
class Deferring : public RequestHandler {
 public:
  Bytes handle(ByteView req) override { return Bytes(req.begin(), req.end()); }
  void handle_deferred(ByteView req, DeferredReply reply) override {
    held.emplace_back(Bytes(req.begin(), req.end()), std::move(reply));
  }
  std::vector<std::pair<Bytes, DeferredReply>> held;
};

TEST(SimNetworkDeferred, ReplyLeavesWhenTheServerAnswersNotBefore) {
  EventLoop loop;
  Deferring server;
  SimNetwork net(loop, Rng(2), opts(1000, 0.0, 1'000'000));
  auto ch = net.connect(server, "bus");
  std::int64_t answered_at = -1;
  Bytes got;
  ch->request({7, 8}, [&](Result<Bytes> r) {
    ASSERT_TRUE(r.is_ok());
    got = *r;
    answered_at = loop.now_us();
  });
  loop.run_until(500'000);
  ASSERT_EQ(server.held.size(), 1u);
  EXPECT_EQ(answered_at, -1);  // held by the server: nothing came back yet
  server.held[0].second(server.held[0].first);
  loop.run();
  EXPECT_EQ(got, (Bytes{7, 8}));
  EXPECT_EQ(answered_at, 500'000 + 1000);  // one network delay after the server answered
}

TEST(SimNetworkDeferred, AReplyNeverGivenIsATimeoutAndAnEmptyOneIsUnanswered) {
  EventLoop loop;
  Deferring server;
  SimNetwork net(loop, Rng(2), opts(1000, 0.0, 100'000));
  auto ch = net.connect(server, "bus");
  std::vector<Errc> got;
  ch->request({1}, [&](Result<Bytes> r) { got.push_back(r.status().code()); });
  ch->request({2}, [&](Result<Bytes> r) { got.push_back(r.status().code()); });
  loop.run_until(50'000);
  ASSERT_EQ(server.held.size(), 2u);
  server.held[1].second(Bytes{});  // the server chose not to answer the second
  loop.run();
  EXPECT_EQ(got, (std::vector<Errc>{Errc::kTimeout, Errc::kTimeout}));
  EXPECT_EQ(net.unanswered(), 1u);
}

TEST(SimNetworkFaults, DuplicateDeliversTwiceButAnswersOnce) {
  EventLoop loop;
  Counter server;
  NetworkOptions o{1000, 0, 0.0};
  o.duplicate_probability = 1.0;
  SimNetwork net(loop, Rng(2), o);
  auto ch = net.connect(server, "bus");
  int replies = 0;
  ch->request({1}, [&](Result<Bytes> r) { replies += r.is_ok(); });
  loop.run();
  EXPECT_EQ(server.calls, 2);
  EXPECT_EQ(replies, 1);
  EXPECT_EQ(net.messages_duplicated(), 1u);
}

TEST(SimNetworkFaults, OutageWindowCutsOnlyItsGroupAndOnlyInsideTheWindow) {
  EventLoop loop;
  Counter server;
  SimNetwork net(loop, Rng(2), opts(1000, 0.0, 5'000'000));
  net.add_outage({"val-R1", 10'000, 20'000});
  auto r1 = net.connect(server, "val-R1-B1");
  auto r2 = net.connect(server, "val-R2-B1");
  std::vector<Errc> got;
  auto record = [&](Result<Bytes> r) { got.push_back(r.status().code()); };
  loop.schedule_at(15'000, [&] {
    r1->request({1}, record);
    r2->request({1}, record);
  });
  loop.schedule_at(20'000, [&] { r1->request({1}, record); });
  loop.run();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], Errc::kUnavailable);  // R1 inside the window: at once
  EXPECT_EQ(got[1], Errc::kOk);           // R2 is not in the group
  EXPECT_EQ(got[2], Errc::kOk);           // the window is half-open: [from, to)
}

TEST(SimNetworkFaults, MessageInTheAirWhenTheOutageBeginsIsLost) {
  EventLoop loop;
  Counter server;
  NetworkOptions o{10'000, 0, 0.0};
  o.timeout_us = 100'000;
  SimNetwork net(loop, Rng(2), o);
  net.add_outage({"bus", 5'000, 50'000});
  auto ch = net.connect(server, "bus");
  Errc code = Errc::kOk;
  ch->request({1}, [&](Result<Bytes> r) { code = r.status().code(); });
  loop.run();
  EXPECT_EQ(server.calls, 0);
  EXPECT_EQ(code, Errc::kTimeout);
}

TEST(SimNetworkFaults, AServerThatGivesNoReplyLeavesTheClientToTimeOut) {
  EventLoop loop;
  Counter server;
  server.answer = false;
  SimNetwork net(loop, Rng(2), opts(1000, 0.0, 30'000));
  auto ch = net.connect(server, "bus");
  Errc code = Errc::kOk;
  ch->request({1}, [&](Result<Bytes> r) { code = r.status().code(); });
  loop.run();
  EXPECT_EQ(server.calls, 1);
  EXPECT_EQ(code, Errc::kTimeout);
  EXPECT_EQ(net.unanswered(), 1u);
}

TEST(SimNetworkFaults, ReorderingLetsALaterMessageOvertake) {
  EventLoop loop;
  Counter server;
  NetworkOptions o{1000, 0, 0.0};
  o.reorder_delay_us = 50'000;
  SimNetwork net(loop, Rng(2), o);
  auto ch = net.connect(server, "bus");
  std::vector<int> order;
  o.reorder_probability = 1.0;
  net.set_options(o);
  ch->request({1}, [&](Result<Bytes>) { order.push_back(1); });
  o.reorder_probability = 0.0;
  net.set_options(o);
  ch->request({2}, [&](Result<Bytes>) { order.push_back(2); });
  loop.run();
  EXPECT_EQ(order, (std::vector<int>{2, 1}));
  EXPECT_GT(net.messages_reordered(), 0u);
}

}  // namespace
}  // namespace citycard::sim
