// The terminal bridge: malformed and out-of-order messages get a clear error and leave the
// harness serving; our terminal (bridge_terminal.h) buys, uploads, and recovers a tear through
// it over real ZeroMQ tcp, with the backend's books balanced.
#include "citycard/hil/bridge.h"

#include <gtest/gtest.h>

#include <thread>

#include "citycard/hil/bridge_terminal.h"
#include "citycard/hil/conformance.h"

namespace citycard::hil {
namespace {

namespace bp = citycard::bridge;

// A raw client: sends bytes, returns the decoded reply.
struct RawClient {
  explicit RawClient(const std::string& endpoint) : client(ctx, endpoint) {}
  bp::BridgeReply send(const Bytes& bytes) {
    auto raw = client.call(bytes, 5000);
    bp::BridgeReply r;
    if (raw) r.ParseFromArray(raw->data(), static_cast<int>(raw->size()));
    return r;
  }
  bp::BridgeReply send(const bp::BridgeRequest& req) {
    std::string s;
    req.SerializeToString(&s);
    return send(Bytes(s.begin(), s.end()));
  }
  zmq::context_t ctx;
  sim::ZmqClient client;
};

bp::BridgeRequest hello_request(std::uint32_t version, std::string terminal) {
  bp::BridgeRequest r;
  r.mutable_hello()->set_version(version);
  r.mutable_hello()->set_terminal(std::move(terminal));
  r.mutable_hello()->set_kind("bus");
  return r;
}

TEST(Bridge, MalformedAndOutOfOrderRequestsGetAClearErrorAndTheHostKeepsServing) {
  auto host = BridgeHost::start("tcp://127.0.0.1:0");
  ASSERT_TRUE(host) << host.status().to_string();
  RawClient c((*host)->endpoint());

  auto expect_error = [&](const bp::BridgeReply& r, bp::BridgeCode code, const std::string& text) {
    ASSERT_TRUE(r.has_error()) << r.DebugString();
    EXPECT_EQ(r.error().code(), code) << r.error().message();
    EXPECT_NE(r.error().message().find(text), std::string::npos) << r.error().message();
  };
  expect_error(c.send(Bytes{0xFF, 0xFF, 0xFF}), bp::BRIDGE_MALFORMED, "not a BridgeRequest");
  expect_error(c.send(bp::BridgeRequest{}), bp::BRIDGE_MALFORMED, "no body");
  bp::BridgeRequest poll;
  poll.mutable_poll();
  expect_error(c.send(poll), bp::BRIDGE_NO_HELLO, "send Hello first");
  expect_error(c.send(hello_request(2, "t")), bp::BRIDGE_VERSION, "version 2");
  expect_error(c.send(hello_request(kBridgeVersion, "")), bp::BRIDGE_MALFORMED, "terminal");

  bp::BridgeReply welcome = c.send(hello_request(kBridgeVersion, "test-terminal"));
  ASSERT_TRUE(welcome.has_welcome()) << welcome.DebugString();
  EXPECT_EQ(welcome.welcome().version(), kBridgeVersion);

  bp::BridgeRequest apdu;
  apdu.mutable_card_apdu()->set_capdu(std::string("\x00\xA4", 2));
  expect_error(c.send(apdu), bp::BRIDGE_MALFORMED, "card C-APDU of 2 bytes");
  apdu.mutable_card_apdu()->set_capdu(std::string("\x00\xA4\x04\x00\x09\x01", 6));  // Lc 9, 1 byte
  expect_error(c.send(apdu), bp::BRIDGE_MALFORMED, "card C-APDU");
  apdu.mutable_card_apdu()->set_capdu(std::string("\x80\x5C\x00\x02\x04", 5));
  expect_error(c.send(apdu), bp::BRIDGE_NO_CARD, "no card");
  bp::BridgeRequest psam;
  psam.mutable_psam_apdu()->set_capdu(std::string("\x00\xB0\x96\x00\x06", 5));
  expect_error(c.send(psam), bp::BRIDGE_NO_PSAM, "no PSAM");
  bp::BridgeRequest backend;
  backend.mutable_backend()->set_frame("garbage");
  expect_error(c.send(backend), bp::BRIDGE_LINK_DOWN, "no backend");
  bp::BridgeRequest outcome;
  outcome.mutable_outcome()->set_card_session(9);
  expect_error(c.send(outcome), bp::BRIDGE_MALFORMED, "unknown card session 9");

  // Still serving: a poll is answered with the calendar and the parameters.
  (*host)->set_now(12345);
  poll.mutable_poll()->set_wait_ms(0);
  bp::BridgeReply p = c.send(poll);
  ASSERT_TRUE(p.has_poll()) << p.DebugString();
  EXPECT_EQ(p.poll().now_epoch2000_s(), 12345);
  EXPECT_EQ(p.poll().card_session(), 0u);
  EXPECT_TRUE(p.poll().has_params());
  const BridgeHostCounters counters = (*host)->counters();
  EXPECT_EQ(counters.malformed, 6u);
  EXPECT_EQ(counters.errors, 11u);
}

TEST(Bridge, ABackendFrameThatIsNotAnEnvelopeIsRefusedAndALinkDownIsSaid) {
  ConformanceOptions o;
  auto bench = ConformanceBench::open(o);
  ASSERT_TRUE(bench) << bench.status().to_string();
  RawClient c((*bench)->host().endpoint());
  ASSERT_TRUE(c.send(hello_request(kBridgeVersion, "t")).has_welcome());
  bp::BridgeRequest backend;
  backend.mutable_backend()->set_frame("garbage");
  bp::BridgeReply r = c.send(backend);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code(), bp::BRIDGE_MALFORMED);
  EXPECT_NE(r.error().message().find("not a wire Envelope"), std::string::npos);
  citycard::wire::Envelope ping;
  ping.set_request_id(1);
  ping.mutable_ping()->set_nonce(77);
  const Bytes frame = protocol::wire::encode(ping);
  backend.mutable_backend()->set_frame(std::string(frame.begin(), frame.end()));
  r = c.send(backend);
  ASSERT_TRUE(r.has_backend()) << r.DebugString();
  const std::string& f = r.backend().frame();
  auto pong =
      protocol::wire::decode(ByteView(reinterpret_cast<const std::uint8_t*>(f.data()), f.size()));
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->pong().nonce(), 77u);
  (*bench)->host().set_link(false);
  r = c.send(backend);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code(), bp::BRIDGE_LINK_DOWN);
}

// Our terminal on a thread, talking to the bench over tcp.
struct RunningTerminal {
  RunningTerminal(const std::string& endpoint, std::set<TerminalDefect> defects = {}) {
    BridgeTerminalOptions o;
    o.endpoint = endpoint;
    o.defects = std::move(defects);
    o.poll_wait_ms = 50;
    thread = std::jthread([o](std::stop_token stop) { status = run_bridge_terminal(o, stop); });
  }
  inline static Status status;
  std::jthread thread;
};

TEST(Bridge, OurTerminalBuysUploadsAndRecoversATearThroughTheBridge) {
  auto bench_r = ConformanceBench::open({});
  ASSERT_TRUE(bench_r) << bench_r.status().to_string();
  ConformanceBench& bench = **bench_r;
  backend::CardParams cp;
  cp.opening_balance_fen = 1000;
  auto card = bench.issue_card(cp);
  ASSERT_TRUE(card) << card.status().to_string();
  RunningTerminal terminal(bench.host().endpoint());

  const std::uint64_t s1 = bench.host().present(card->model, card->uid);
  auto o1 = bench.host().wait_outcome(s1, 10'000);
  ASSERT_TRUE(o1);
  EXPECT_TRUE(o1->accepted()) << o1->reason();
  EXPECT_EQ(o1->charged_fen(), 200);
  bench.host().remove();
  EXPECT_EQ(bench.balance_fen(*card), 800u);
  ASSERT_TRUE(bench.host().wait_idle(10'000, s1));
  ASSERT_EQ(bench.host().uploads().size(), 1u);
  EXPECT_EQ(bench.host().uploads()[0].records(0).amount_fen(), 200);
  auto believed = bench.backend_balance_fen(*card);
  ASSERT_TRUE(believed);
  EXPECT_EQ(*believed, 800);
  ASSERT_TRUE(bench.host().hello());
  EXPECT_EQ(bench.host().hello()->terminal(), "citycard-terminal");

  // Torn after the card acted on the DEBIT: its position in a tap, from the first session.
  const BridgeSession first = bench.host().session(s1);
  std::size_t debit = first.apdus.size();
  for (std::size_t i = 0; i < first.apdus.size(); ++i) {
    if (first.apdus[i].capdu[0] == 0x80 && first.apdus[i].capdu[1] == 0x54) debit = i;
  }
  ASSERT_LT(debit, first.apdus.size());
  bench.advance_s(60);
  const std::uint64_t s2 =
      bench.host().present(card->model, card->uid, std::make_pair(debit, true));
  auto o2 = bench.host().wait_outcome(s2, 10'000);
  ASSERT_TRUE(o2);
  EXPECT_FALSE(o2->accepted());
  EXPECT_EQ(o2->reason(), "torn");
  EXPECT_EQ(bench.balance_fen(*card), 600u) << "the card was debited before it left";
  const std::uint64_t s3 = bench.host().present(card->model, card->uid);
  auto o3 = bench.host().wait_outcome(s3, 10'000);
  ASSERT_TRUE(o3);
  EXPECT_TRUE(o3->accepted());
  EXPECT_EQ(o3->reason(), "recovered");
  EXPECT_EQ(bench.balance_fen(*card), 600u) << "the re-tap completes; no second charge";
  bench.host().remove();
  ASSERT_TRUE(bench.host().wait_idle(10'000, s3));
  believed = bench.backend_balance_fen(*card);
  ASSERT_TRUE(believed);
  EXPECT_EQ(*believed, 600);
  EXPECT_TRUE(bench.check_conservation()) << bench.check_conservation().to_string();
  terminal.thread.request_stop();
  terminal.thread.join();
  EXPECT_TRUE(RunningTerminal::status) << RunningTerminal::status.to_string();
}

}  // namespace
}  // namespace citycard::hil
