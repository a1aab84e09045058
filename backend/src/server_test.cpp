#include "citycard/backend/server.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "test_city.h"

namespace citycard::backend {
namespace {

namespace pw = protocol::wire;
using citycard::wire::Envelope;

// A latch the serving thread can be parked on (through ServerOptions::on_tick), so a test can
// fill the server's queue while the backend is busy, and release it.
class Gate {
 public:
  void park() {  // on the serving thread
    std::unique_lock<std::mutex> lock(mu_);
    if (!armed_) return;
    armed_ = false;
    parked_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return released_; });
  }
  void arm() {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = true;
    parked_ = false;
    released_ = false;
  }
  void wait_parked() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return parked_; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false, parked_ = false, released_ = false;
};

// Runs `fn` on the serving thread (between requests) and waits for it: the only safe way for a
// test to touch the Backend while the server serves.
class OnServer {
 public:
  void tick() {
    std::function<void()> fn;
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn = std::move(fn_);
      fn_ = nullptr;
    }
    if (!fn) return;
    fn();
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }
  void run(std::function<void()> fn) {
    std::unique_lock<std::mutex> lock(mu_);
    fn_ = std::move(fn);
    done_ = false;
    cv_.wait(lock, [this] { return done_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> fn_;
  bool done_ = false;
};

// A DEALER that sends without waiting (to have several requests in the server at once).
class Dealer {
 public:
  Dealer(zmq::context_t& ctx, const std::string& endpoint) : s_(ctx, zmq::socket_type::dealer) {
    s_.set(zmq::sockopt::linger, 0);
    s_.connect(endpoint);
  }
  void send(const Bytes& frame) {
    s_.send(zmq::message_t(), zmq::send_flags::sndmore);
    s_.send(zmq::buffer(frame), zmq::send_flags::none);
  }
  Envelope receive() {
    std::vector<zmq::message_t> parts;
    do {
      zmq::message_t m;
      (void)s_.recv(m, zmq::recv_flags::none);
      parts.push_back(std::move(m));
    } while (parts.back().more());
    auto env = pw::decode(
        ByteView(static_cast<const std::uint8_t*>(parts.back().data()), parts.back().size()));
    EXPECT_TRUE(env.is_ok()) << env.status().to_string();
    return env.is_ok() ? *env : Envelope();
  }

 private:
  zmq::socket_t s_;
};

class ServerTest : public testing::BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    options_.listen = "tcp://127.0.0.1:*";
    options_.poll_interval_ms = 10;
    options_.log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.push_back(line);
    };
    options_.on_tick = [this] {
      gate_.park();
      on_server_.tick();
    };
  }
  void TearDown() override {
    stop();
    BackendTest::TearDown();
  }
  void start() {
    std::string root_key;
    auto s = Server::open(*backend, ctx_, options_, &root_key);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    server_ = std::move(s).value();
  }
  void serve() {
    thread_ = std::thread([this] { server_->serve(); });
  }
  void stop() {
    if (thread_.joinable()) {
      server_->stop();
      thread_.join();
    }
  }
  std::vector<std::string> log_lines() {
    std::lock_guard<std::mutex> lock(log_mu_);
    return log_;
  }
  bool logged(const std::string& needle) {
    for (const std::string& l : log_lines()) {
      if (l.find(needle) != std::string::npos) return true;
    }
    return false;
  }
  TerminalCredentials commission(const std::string& route) {
    TerminalParams p;
    p.operator_id = "bus-co";
    p.route = route;
    auto t = commission_terminal(*backend, server_->ca(), p);
    EXPECT_TRUE(t.is_ok()) << t.status().to_string();
    return t.is_ok() ? *t : TerminalCredentials{};
  }
  // How a terminal connects: the server's key from its certificate, checked against what the
  // terminal trusts (root, city CA, current CRL).
  sim::ZmqClientOptions terminal_client(const sim::CurveKeyPair& keys) {
    auto trust =
        CertificateVerifier::create(server_->ca().root_pem(), {server_->ca().city_ca_pem()},
                                    {*server_->ca().crl_pem("city:3100")});
    EXPECT_TRUE(trust.is_ok());
    auto curve = curve_client_options(**trust, server_->identity().certificate.pem,
                                      server_->ca().now_unix_s(), keys);
    EXPECT_TRUE(curve.is_ok()) << curve.status().to_string();
    sim::ZmqClientOptions o;
    o.curve = *curve;
    return o;
  }
  Envelope call(sim::ZmqClient& client, const Bytes& frame) {
    auto reply = client.call(frame, 10'000);
    EXPECT_TRUE(reply.is_ok()) << reply.status().to_string();
    if (!reply.is_ok()) return Envelope();
    auto env = pw::decode(*reply);
    EXPECT_TRUE(env.is_ok());
    return env.is_ok() ? *env : Envelope();
  }
  static testing::TestTerminal as_test_terminal(const TerminalCredentials& t) {
    return testing::TestTerminal{t.psam, "bus-co", "15", 1, 1};
  }

  zmq::context_t ctx_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  Gate gate_;
  OnServer on_server_;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

TEST(ServerFrames, PeekFindsTheRequestIdAndBodyWithoutParsing) {
  Envelope e;
  e.set_request_id(123456789012345ULL);
  e.mutable_ping()->set_nonce(5);
  const FramePeek p = peek_frame(pw::encode(e));
  EXPECT_EQ(p.request_id, 123456789012345ULL);
  EXPECT_EQ(p.body_field, 14);
  Envelope u;
  u.set_request_id(7);
  u.mutable_upload()->set_batch_no(3);
  EXPECT_EQ(peek_frame(pw::encode(u)).body_field, 10);
  EXPECT_EQ(peek_frame(Bytes{'C', 'C', 1, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff}).request_id, 0u);
  EXPECT_EQ(peek_frame(Bytes{}).body_field, 0);

  auto busy = pw::decode(refusal_reply(pw::encode(e), sim::Refusal::kBusy, "10 waiting"));
  ASSERT_TRUE(busy.is_ok());
  EXPECT_EQ(busy->request_id(), 123456789012345ULL);
  EXPECT_EQ(busy->error().code(), citycard::wire::BUSY);
  EXPECT_NE(busy->error().message().find("retry later"), std::string::npos);
  auto denied = pw::decode(refusal_reply(pw::encode(e), sim::Refusal::kPeerNotAllowed, "revoked"));
  EXPECT_EQ(denied->error().code(), citycard::wire::UNAUTHENTICATED);
}

TEST_F(ServerTest, CertifiedTerminalUploadsOverCurveAndOthersAreRefusedWithAReason) {
  if (!sim::curve_available()) GTEST_SKIP() << "libzmq without CURVE";
  start();
  const TerminalCredentials bus = commission("15");
  const TerminalCredentials revoked = commission("16");
  ASSERT_TRUE(server_->ca()
                  .revoke(revoked.certificate.serial_hex, RevocationReason::kKeyCompromise)
                  .is_ok());
  testing::TestCard alice = issue(1'000);
  testing::TestTerminal t = as_test_terminal(bus);
  const Bytes upload = testing::upload_frame(make_batch(t, {purchase(alice, t, 200, now())}), 41);
  const sim::ZmqClientOptions as_bus = terminal_client(bus.curve_keys);
  const sim::ZmqClientOptions as_stranger = terminal_client(*sim::generate_curve_key_pair());
  const sim::ZmqClientOptions as_revoked = terminal_client(revoked.curve_keys);
  serve();

  sim::ZmqClient ok(ctx_, server_->endpoint(), as_bus);
  const Envelope ack = call(ok, upload);
  ASSERT_TRUE(ack.has_upload_ack()) << ack.DebugString();
  EXPECT_EQ(ack.request_id(), 41u);
  EXPECT_EQ(ack.upload_ack().accepted(), 1u);

  // No certificate at all: a CURVE key nobody vouched for.
  sim::ZmqClient stranger(ctx_, server_->endpoint(), as_stranger);
  auto a = stranger.call(upload, 10'000);
  EXPECT_EQ(a.status().code(), Errc::kRejected) << a.status().to_string();
  // A revoked terminal.
  sim::ZmqClient gone(ctx_, server_->endpoint(), as_revoked);
  auto b = gone.call(upload, 10'000);
  EXPECT_EQ(b.status().code(), Errc::kRejected) << b.status().to_string();
  // Plain tcp to a CURVE server: no handshake, no answer.
  sim::ZmqClient plain(ctx_, server_->endpoint());
  EXPECT_EQ(plain.call(upload, 300).status().code(), Errc::kTimeout);
  stop();

  EXPECT_TRUE(logged("refused connection from")) << log_lines().size();
  EXPECT_TRUE(logged("no certificate binds CURVE key"));
  EXPECT_TRUE(logged("certificate " + revoked.certificate.serial_hex + " is revoked"));
  EXPECT_EQ(server_->counters().transport.requests, 1u);
  EXPECT_GE(server_->counters().transport.zap_denied, 2u);
  EXPECT_EQ(card(alice).balance_fen, 800);
}

TEST_F(ServerTest, TerminalRevokedWhileConnectedIsStoppedAtItsNextRequest) {
  if (!sim::curve_available()) GTEST_SKIP() << "libzmq without CURVE";
  start();
  const TerminalCredentials bus = commission("15");
  const sim::ZmqClientOptions as_bus = terminal_client(bus.curve_keys);
  serve();
  sim::ZmqClient c(ctx_, server_->endpoint(), as_bus);
  Envelope ping;
  ping.set_request_id(1);
  ping.mutable_ping()->set_nonce(9);
  ASSERT_TRUE(call(c, pw::encode(ping)).has_pong());
  on_server_.run([&] {
    ASSERT_TRUE(server_->ca()
                    .revoke(bus.certificate.serial_hex, RevocationReason::kAffiliationChanged)
                    .is_ok());
  });
  ping.set_request_id(2);
  const Envelope refused = call(c, pw::encode(ping));
  ASSERT_TRUE(refused.has_error()) << refused.DebugString();
  EXPECT_EQ(refused.request_id(), 2u);
  EXPECT_EQ(refused.error().code(), citycard::wire::UNAUTHENTICATED);
  EXPECT_NE(refused.error().message().find("revoked"), std::string::npos);
  stop();
  EXPECT_EQ(server_->counters().transport.not_allowed_replies, 1u);
}

TEST_F(ServerTest, ATerminalRefusesAServerWhoseCertificateIsRevoked) {
  if (!sim::curve_available()) GTEST_SKIP() << "libzmq without CURVE";
  start();
  const std::string server_pem = server_->identity().certificate.pem;
  ASSERT_TRUE(
      server_->ca()
          .revoke(server_->identity().certificate.serial_hex, RevocationReason::kKeyCompromise)
          .is_ok());
  auto trust = CertificateVerifier::create(server_->ca().root_pem(), {server_->ca().city_ca_pem()},
                                           {*server_->ca().crl_pem("city:3100")});
  ASSERT_TRUE(trust.is_ok());
  auto o = curve_client_options(**trust, server_pem, server_->ca().now_unix_s(),
                                *sim::generate_curve_key_pair());
  EXPECT_EQ(o.status().code(), Errc::kRejected);
  EXPECT_NE(o.status().message().find("revoked"), std::string::npos) << o.status().message();
  // And a terminal's certificate is no server's.
  const TerminalCredentials bus = commission("15");
  auto p = curve_client_options(**trust, bus.certificate.pem, server_->ca().now_unix_s(),
                                bus.curve_keys);
  EXPECT_EQ(p.status().code(), Errc::kRejected);
}

TEST_F(ServerTest, AFullQueueIsAnsweredBusyAndWhatWasQueuedIsServed) {
  options_.curve = false;  // flow control is the same with or without CURVE
  options_.max_pending_requests = 3;
  options_.group_commit_max_requests = 1;
  start();
  gate_.arm();
  serve();
  gate_.wait_parked();  // the backend is busy: nothing leaves the queue
  Dealer d(ctx_, server_->endpoint());
  for (std::uint64_t id = 1; id <= 10; ++id) {
    Envelope ping;
    ping.set_request_id(id);
    ping.mutable_ping()->set_nonce(id);
    d.send(pw::encode(ping));
  }
  // Requests 4..10 find three waiting: each is told BUSY at once, with its own id.
  for (std::uint64_t id = 4; id <= 10; ++id) {
    const Envelope busy = d.receive();
    ASSERT_TRUE(busy.has_error()) << busy.DebugString();
    EXPECT_EQ(busy.error().code(), citycard::wire::BUSY);
    EXPECT_EQ(busy.request_id(), id);
  }
  gate_.release();
  for (std::uint64_t id = 1; id <= 3; ++id) {
    const Envelope pong = d.receive();
    ASSERT_TRUE(pong.has_pong()) << pong.DebugString();
    EXPECT_EQ(pong.request_id(), id);
  }
  stop();
  const ServerCounters c = server_->counters();
  EXPECT_EQ(c.transport.busy_replies, 7u);
  EXPECT_EQ(c.transport.requests, 3u);
  EXPECT_EQ(c.transport.pending_max, 3u);
}

TEST_F(ServerTest, QueuedUploadsAreCommittedTogetherAndEachIsAcknowledged) {
  options_.curve = false;
  options_.max_pending_requests = 6;
  options_.group_commit_max_requests = 16;
  start();
  std::vector<testing::TestTerminal> buses;
  std::vector<testing::TestCard> cards;
  for (int i = 0; i < 6; ++i) {
    buses.push_back(add_terminal("bus-co", "R" + std::to_string(i)));
    cards.push_back(issue(1'000));
  }
  std::vector<Bytes> frames;
  for (std::size_t i = 0; i < buses.size(); ++i) {
    frames.push_back(testing::upload_frame(
        make_batch(buses[i], {purchase(cards[i], buses[i], 100, now())}), 100 + i));
  }
  gate_.arm();
  serve();
  gate_.wait_parked();
  Dealer d(ctx_, server_->endpoint());
  for (const Bytes& f : frames) d.send(f);
  Envelope ping;
  ping.set_request_id(999);
  ping.mutable_ping();
  d.send(pw::encode(ping));
  // One socket delivers in order: the ping's BUSY proves the six uploads wait in the queue.
  const Envelope busy = d.receive();
  ASSERT_TRUE(busy.has_error());
  EXPECT_EQ(busy.request_id(), 999u);
  gate_.release();
  std::set<std::uint64_t> acked;
  for (int i = 0; i < 6; ++i) {
    const Envelope e = d.receive();
    ASSERT_TRUE(e.has_upload_ack()) << e.DebugString();
    EXPECT_EQ(e.upload_ack().accepted(), 1u);
    acked.insert(e.request_id());
  }
  stop();
  EXPECT_EQ(acked.size(), 6u);
  const ServerCounters c = server_->counters();
  EXPECT_EQ(c.groups, 1u);  // six uploads, one transaction, one fsync
  EXPECT_EQ(c.grouped_uploads, 6u);
  EXPECT_EQ(*backend->ingest().swipe_count(), 6);
}

TEST_F(ServerTest, OversizedFramesAreRefusedOrCostTheirSenderTheConnection) {
  options_.curve = false;
  options_.max_message_bytes = static_cast<std::int64_t>(pw::kMaxFrameBytes) + 1'024;
  start();
  serve();
  // Just over the codec's limit: answered, REJECTED, the connection stays.
  Bytes over(pw::kMaxFrameBytes + 100, 0);
  over[0] = 'C';
  over[1] = 'C';
  over[2] = 1;
  const std::uint32_t len = static_cast<std::uint32_t>(over.size() - pw::kHeaderBytes);
  over[4] = static_cast<std::uint8_t>(len >> 24);
  over[5] = static_cast<std::uint8_t>(len >> 16);
  over[6] = static_cast<std::uint8_t>(len >> 8);
  over[7] = static_cast<std::uint8_t>(len);
  sim::ZmqClient c(ctx_, server_->endpoint());
  const Envelope r = call(c, over);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code(), citycard::wire::REJECTED);
  EXPECT_NE(r.error().message().find("over the limit"), std::string::npos);
  Envelope ping;
  ping.set_request_id(5);
  ping.mutable_ping();
  EXPECT_TRUE(call(c, pw::encode(ping)).has_pong());
  // Over ZMQ_MAXMSGSIZE: ZeroMQ drops that connection; the server serves everyone else.
  sim::ZmqClient huge(ctx_, server_->endpoint());
  EXPECT_EQ(huge.call(Bytes(pw::kMaxFrameBytes + 4'096, 0), 500).status().code(), Errc::kTimeout);
  sim::ZmqClient other(ctx_, server_->endpoint());
  EXPECT_TRUE(call(other, pw::encode(ping)).has_pong());
  stop();
}

TEST_F(ServerTest, ExportsWhatTerminalsNeedAndOpensslAcceptsTheServerCertificate) {
  if (!sim::curve_available()) GTEST_SKIP() << "libzmq without CURVE";
  start();
  testing::TempDir dir;
  ASSERT_TRUE(server_->export_pki(dir.file("pki")).is_ok());
  const std::string p = dir.file("pki");
  const std::string cmd = "openssl verify -attime " + std::to_string(server_->ca().now_unix_s()) +
                          " -CAfile " + p + "/root.pem -untrusted " + p +
                          "/city-ca.pem -crl_check -CRLfile " + p + "/city.crl.pem " + p +
                          "/server.pem > /dev/null 2>&1";
  EXPECT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 0) << cmd;
  std::ifstream key(p + "/server.curve");
  std::string z85;
  key >> z85;
  EXPECT_EQ(sim::z85_decode(z85), server_->identity().curve_keys.public_key);
  // The server certified the backend's QR issuer when it opened the CA; validators get it.
  const std::string qr_cmd = "openssl verify -attime " +
                             std::to_string(server_->ca().now_unix_s()) + " -CAfile " + p +
                             "/root.pem -untrusted " + p + "/city-ca.pem -crl_check -CRLfile " + p +
                             "/city.crl.pem " + p + "/qr-issuer.pem > /dev/null 2>&1";
  EXPECT_EQ(WEXITSTATUS(std::system(qr_cmd.c_str())), 0) << qr_cmd;
}

}  // namespace
}  // namespace citycard::backend
