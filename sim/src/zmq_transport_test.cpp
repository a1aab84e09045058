#include "citycard/sim/zmq_transport.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace citycard::sim {
namespace {

class Upper : public RequestHandler {
 public:
  Bytes handle(ByteView req) override {
    Bytes out(req.begin(), req.end());
    for (auto& b : out) b = static_cast<std::uint8_t>(b + 1);
    return out;
  }
};

TEST(ZmqTransport, RequestReplyOverRealTcpSockets) {
  zmq::context_t ctx;
  Upper handler;
  ZmqServer server(ctx, handler);
  ASSERT_TRUE(server.bind("tcp://127.0.0.1:*").is_ok());
  std::thread t([&] { server.serve(); });
  {
    ZmqClient client(ctx, server.endpoint());
    for (int i = 0; i < 100; ++i) {
      auto r = client.call(Bytes{1, 2, static_cast<std::uint8_t>(i)}, 5000);
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      EXPECT_EQ(*r, (Bytes{2, 3, static_cast<std::uint8_t>(i + 1)}));
    }
  }
  server.stop();
  t.join();
  EXPECT_EQ(server.requests(), 100u);
}

TEST(ZmqTransport, NoServerMeansTimeoutNotHang) {
  zmq::context_t ctx;
  ZmqClient client(ctx, "tcp://127.0.0.1:1");  // nothing listens on port 1
  auto r = client.call(Bytes{1}, 50);
  EXPECT_EQ(r.status().code(), Errc::kTimeout);
}

}  // namespace
}  // namespace citycard::sim

// ---- CURVE, ZAP, BUSY (queued serving) -------------------------------------------------------

namespace citycard::sim {
namespace {

// Admits the keys it was given; a key can be withdrawn after its connection was admitted.
class KeyListAuthenticator : public CurveAuthenticator {
 public:
  void allow(const CurveKey& key, const std::string& user) {
    std::lock_guard<std::mutex> lock(mu_);
    users_[key] = user;
  }
  void withdraw(const std::string& user) {
    std::lock_guard<std::mutex> lock(mu_);
    withdrawn_.push_back(user);
  }
  ZapVerdict authenticate(const CurveKey& key, const std::string&) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = users_.find(key);
    if (it == users_.end()) {
      refusals_.push_back("unknown key " + z85_encode(key));
      return {false, "", refusals_.back()};
    }
    return {true, it->second, ""};
  }
  bool still_allowed(const std::string& user, std::string& reason) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (std::find(withdrawn_.begin(), withdrawn_.end(), user) == withdrawn_.end()) return true;
    reason = user + " was withdrawn";
    return false;
  }
  std::vector<std::string> refusals() {
    std::lock_guard<std::mutex> lock(mu_);
    return refusals_;
  }

 private:
  std::mutex mu_;
  std::map<CurveKey, std::string> users_;
  std::vector<std::string> withdrawn_;
  std::vector<std::string> refusals_;
};

// Refusals are answered with "BUSY:<reason>" or "DENY:<reason>".
Bytes refusal_text(ByteView, Refusal refusal, const std::string& reason) {
  const std::string s = (refusal == Refusal::kBusy ? "BUSY:" : "DENY:") + reason;
  return Bytes(s.begin(), s.end());
}

std::string text(const Bytes& b) {
  return std::string(b.begin(), b.end());
}

// Echoes; when `hold` is set, the first request waits until released, so a test can fill the
// queue behind it.
class GateHandler : public GroupRequestHandler {
 public:
  Bytes handle(ByteView req) override {
    wait_if_held();
    return Bytes(req.begin(), req.end());
  }
  std::vector<Bytes> handle_group(std::span<const ByteView> reqs) override {
    wait_if_held();
    group_sizes.push_back(reqs.size());
    std::vector<Bytes> out;
    for (ByteView r : reqs) out.emplace_back(r.begin(), r.end());
    return out;
  }
  void hold() { held_ = true; }
  void wait_until_entered() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return entered_; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu_);
    held_ = false;
    cv_.notify_all();
  }
  std::vector<std::size_t> group_sizes;  // read after serve() returned

 private:
  void wait_if_held() {
    std::unique_lock<std::mutex> lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !held_; });
  }
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
  bool entered_ = false;
};

// A DEALER that sends without waiting, to put several requests in the server's queue at once.
class RawDealer {
 public:
  RawDealer(zmq::context_t& ctx, const std::string& endpoint) : s_(ctx, zmq::socket_type::dealer) {
    s_.set(zmq::sockopt::linger, 0);
    s_.connect(endpoint);
  }
  void send(const std::string& payload) {
    s_.send(zmq::message_t(), zmq::send_flags::sndmore);
    s_.send(zmq::buffer(payload), zmq::send_flags::none);
  }
  std::string receive() {  // blocks: every request the test sends is answered
    std::vector<zmq::message_t> parts;
    do {
      zmq::message_t m;
      (void)s_.recv(m, zmq::recv_flags::none);
      parts.push_back(std::move(m));
    } while (parts.back().more());
    return parts.back().to_string();
  }

 private:
  zmq::socket_t s_;
};

class CurveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!curve_available()) GTEST_SKIP() << "libzmq without CURVE";
    server_keys = *generate_curve_key_pair();
    terminal_keys = *generate_curve_key_pair();
    auth.allow(terminal_keys.public_key, "terminal-1");
  }
  ZmqServerOptions options() {
    ZmqServerOptions o;
    o.curve = CurveServerOptions{server_keys, &auth, "citycard"};
    o.refusal_reply = refusal_text;
    o.poll_interval_ms = 20;
    return o;
  }
  ZmqClientOptions client(const CurveKeyPair& keys) {
    ZmqClientOptions o;
    o.curve = CurveClientOptions{server_keys.public_key, keys};
    return o;
  }

  zmq::context_t ctx;
  CurveKeyPair server_keys, terminal_keys;
  KeyListAuthenticator auth;
};

TEST(Curve, KeysRoundTripThroughZ85AndPublicFollowsFromSecret) {
  if (!curve_available()) GTEST_SKIP() << "libzmq without CURVE";
  const CurveKeyPair k = *generate_curve_key_pair();
  EXPECT_EQ(z85_encode(k.public_key).size(), 40u);
  EXPECT_EQ(*z85_decode(z85_encode(k.secret_key)), k.secret_key);
  EXPECT_EQ(*curve_public_key(k.secret_key), k.public_key);
  EXPECT_FALSE(z85_decode("too short"));
  EXPECT_FALSE(z85_decode(std::string(40, '"')));  // '"' is not a Z85 character
}

TEST_F(CurveTest, AdmittedClientTalksEncryptedUnknownKeyIsRefusedWithAReason) {
  Upper handler;
  ZmqServer server(ctx, handler, options());
  ASSERT_TRUE(server.bind("tcp://127.0.0.1:*").is_ok());
  std::thread t([&] { server.serve(); });
  {
    ZmqClient ok(ctx, server.endpoint(), client(terminal_keys));
    auto r = ok.call(Bytes{1, 2}, 5000);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(*r, (Bytes{2, 3}));

    const CurveKeyPair stranger = *generate_curve_key_pair();
    ZmqClient refused(ctx, server.endpoint(), client(stranger));
    auto no = refused.call(Bytes{1}, 5000);
    EXPECT_EQ(no.status().code(), Errc::kRejected) << no.status().to_string();
    EXPECT_NE(no.status().message().find("ZAP status 400"), std::string::npos);
  }
  server.stop();
  t.join();
  const auto refusals = auth.refusals();
  ASSERT_FALSE(refusals.empty());
  EXPECT_NE(refusals.front().find("unknown key"), std::string::npos);
  EXPECT_EQ(server.counters().requests, 1u);
  EXPECT_GE(server.counters().zap_denied, 1u);
  EXPECT_EQ(server.counters().zap_allowed, 1u);
}

TEST_F(CurveTest, PlainClientGetsNothingFromACurveServer) {
  Upper handler;
  ZmqServer server(ctx, handler, options());
  ASSERT_TRUE(server.bind("tcp://127.0.0.1:*").is_ok());
  std::thread t([&] { server.serve(); });
  {
    ZmqClient plain(ctx, server.endpoint());
    EXPECT_EQ(plain.call(Bytes{1}, 300).status().code(), Errc::kTimeout);
  }
  server.stop();
  t.join();
  EXPECT_EQ(server.counters().requests, 0u);
}

TEST_F(CurveTest, WithdrawnAfterConnectingIsRefusedOnTheNextRequest) {
  Upper handler;
  ZmqServerOptions o = options();
  o.max_pending_requests = 16;  // the queued path checks peers as well
  ZmqServer server(ctx, handler, o);
  ASSERT_TRUE(server.bind("tcp://127.0.0.1:*").is_ok());
  std::thread t([&] { server.serve(); });
  {
    ZmqClient c(ctx, server.endpoint(), client(terminal_keys));
    ASSERT_TRUE(c.call(Bytes{1}, 5000).is_ok());
    auth.withdraw("terminal-1");
    auto r = c.call(Bytes{1}, 5000);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(text(*r), "DENY:terminal-1 was withdrawn");
  }
  server.stop();
  t.join();
  EXPECT_EQ(server.counters().not_allowed_replies, 1u);
  EXPECT_EQ(server.counters().requests, 1u);
}

TEST_F(CurveTest, SecondCurveServerInOneContextCannotStartItsZapHandler) {
  Upper handler;
  ZmqServer a(ctx, handler, options());
  ZmqServer b(ctx, handler, options());
  ASSERT_TRUE(a.bind("tcp://127.0.0.1:*").is_ok());
  const Status s = b.bind("tcp://127.0.0.1:*");
  EXPECT_EQ(s.code(), Errc::kUnavailable);
  EXPECT_NE(s.message().find("ZAP"), std::string::npos);
}

ZmqServerOptions queued(std::size_t max_pending) {
  ZmqServerOptions o;
  o.max_pending_requests = max_pending;
  o.refusal_reply = refusal_text;
  o.poll_interval_ms = 20;
  return o;
}

TEST(ZmqQueued, FullQueueIsAnsweredBusyAtOnceAndQueuedRequestsStillGetTheirReplies) {
  zmq::context_t ctx;
  GateHandler handler;
  handler.hold();
  ZmqServer server(ctx, static_cast<RequestHandler&>(handler), queued(2));
  ASSERT_TRUE(server.bind("tcp://127.0.0.1:*").is_ok());
  std::thread t([&] { server.serve(); });
  RawDealer d(ctx, server.endpoint());
  d.send("r1");
  handler.wait_until_entered();  // r1 is being handled; the queue is empty
  for (const char* r : {"r2", "r3", "r4", "r5"}) d.send(r);
  // r2 and r3 wait in the queue (its limit is 2); r4 and r5 are refused while r1 still runs.
  EXPECT_EQ(d.receive().substr(0, 5), "BUSY:");
  EXPECT_EQ(d.receive().substr(0, 5), "BUSY:");
  handler.release();
  EXPECT_EQ(d.receive(), "r1");
  EXPECT_EQ(d.receive(), "r2");
  EXPECT_EQ(d.receive(), "r3");
  server.stop();
  t.join();
  const ZmqServerCounters c = server.counters();
  EXPECT_EQ(c.busy_replies, 2u);
  EXPECT_EQ(c.requests, 3u);
  EXPECT_EQ(c.pending_max, 2u);
}

TEST(ZmqQueued, GroupHandlerGetsTheQueuedRequestsTogether) {
  zmq::context_t ctx;
  GateHandler handler;
  handler.hold();
  ZmqServerOptions o = queued(5);
  o.group_requests_max = 8;
  ZmqServer server(ctx, handler, o);
  ASSERT_TRUE(server.bind("tcp://127.0.0.1:*").is_ok());
  std::thread t([&] { server.serve(); });
  RawDealer d(ctx, server.endpoint());
  d.send("first");
  handler.wait_until_entered();
  for (int i = 0; i < 5; ++i) d.send("g" + std::to_string(i));
  d.send("probe");
  // One socket delivers in order: the probe's BUSY proves the five before it are queued.
  EXPECT_EQ(d.receive().substr(0, 5), "BUSY:");
  handler.release();
  EXPECT_EQ(d.receive(), "first");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(d.receive(), "g" + std::to_string(i));
  server.stop();
  t.join();
  EXPECT_EQ(handler.group_sizes, std::vector<std::size_t>{5});
  EXPECT_EQ(server.counters().requests, 6u);
}

TEST(ZmqQueued, StopAnswersWhatWasAcceptedBeforeServeReturns) {
  zmq::context_t ctx;
  GateHandler handler;
  handler.hold();
  ZmqServer server(ctx, static_cast<RequestHandler&>(handler), queued(2));
  ASSERT_TRUE(server.bind("tcp://127.0.0.1:*").is_ok());
  std::thread t([&] { server.serve(); });
  RawDealer d(ctx, server.endpoint());
  d.send("a");
  handler.wait_until_entered();
  d.send("b");
  d.send("c");
  d.send("probe");
  EXPECT_EQ(d.receive().substr(0, 5), "BUSY:");  // b and c are queued
  server.stop();
  handler.release();
  EXPECT_EQ(d.receive(), "a");
  EXPECT_EQ(d.receive(), "b");
  EXPECT_EQ(d.receive(), "c");
  t.join();
  EXPECT_EQ(server.counters().requests, 3u);
}

TEST(ZmqQueued, OversizedMessageDropsOnlyThatConnection) {
  zmq::context_t ctx;
  Upper handler;
  ZmqServerOptions o = queued(10);
  o.max_message_bytes = 1'000;
  o.max_pending_bytes = 10'000;
  ZmqServer server(ctx, handler, o);
  ASSERT_TRUE(server.bind("tcp://127.0.0.1:*").is_ok());
  std::thread t([&] { server.serve(); });
  {
    ZmqClient big(ctx, server.endpoint());
    EXPECT_EQ(big.call(Bytes(2'000, 1), 300).status().code(), Errc::kTimeout);
    ZmqClient small(ctx, server.endpoint());
    auto r = small.call(Bytes(900, 1), 5000);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(*r, Bytes(900, 2));
  }
  server.stop();
  t.join();
  EXPECT_EQ(server.counters().requests, 1u);
}

}  // namespace
}  // namespace citycard::sim
