#include "citycard/backend/service.h"

#include <gtest/gtest.h>

#include <thread>

#include "citycard/sim/zmq_transport.h"
#include "test_city.h"

namespace citycard::backend {
namespace {

namespace pw = protocol::wire;
using citycard::wire::Envelope;
using testing::TestCard;
using testing::TestTerminal;

class ServiceTest : public testing::BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    alice = issue(1'000);
    bus = add_terminal("bus-co", "15");
  }

  Envelope call(ByteView frame) {
    const Bytes reply = backend->service().handle(frame);
    auto env = pw::decode(reply);
    EXPECT_TRUE(env.is_ok()) << env.status().to_string();
    return env.is_ok() ? *env : Envelope();
  }
  Envelope call(const Envelope& request) { return call(pw::encode(request)); }

  TestCard alice;
  TestTerminal bus;
};

TEST_F(ServiceTest, TruncatedFrameGetsMalformedAndChangesNothing) {
  const Bytes frame =
      testing::upload_frame(make_batch(bus, {purchase(alice, bus, 200, now())}), 77);
  const Bytes truncated(frame.begin(), frame.end() - 3);
  const Envelope reply = call(truncated);
  ASSERT_TRUE(reply.has_error());
  EXPECT_EQ(reply.error().code(), citycard::wire::MALFORMED);
  EXPECT_EQ(reply.request_id(), 0u);
  EXPECT_NE(reply.error().message().find("truncated"), std::string::npos);
  EXPECT_EQ(card(alice).balance_fen, 1'000);
  EXPECT_EQ(*backend->ingest().batch_count(), 0);
  EXPECT_EQ(backend->counters().error_replies, 1u);

  // The whole frame then goes through.
  const Envelope ok = call(frame);
  ASSERT_TRUE(ok.has_upload_ack()) << ok.DebugString();
  EXPECT_EQ(ok.request_id(), 77u);
  EXPECT_EQ(ok.upload_ack().accepted(), 1u);
  EXPECT_EQ(card(alice).balance_fen, 800);
}

TEST_F(ServiceTest, GarbageAndEmptyFramesGetMalformed) {
  for (const Bytes& junk : {Bytes{}, Bytes{'C', 'C'}, Bytes{'X', 'X', 1, 0, 0, 0, 0, 0},
                            Bytes{'C', 'C', 1, 0, 0, 0, 0, 2, 0xff, 0xff}}) {
    const Envelope reply = call(junk);
    ASSERT_TRUE(reply.has_error());
    EXPECT_EQ(reply.error().code(), citycard::wire::MALFORMED) << reply.error().message();
  }
}

TEST_F(ServiceTest, OversizedFrameIsRejectedByTheCodecLimit) {
  Bytes frame{'C', 'C', 1, 0};
  put_u32be(frame, static_cast<std::uint32_t>(pw::kMaxFrameBytes));
  const Envelope reply = call(frame);
  ASSERT_TRUE(reply.has_error());
  EXPECT_EQ(reply.error().code(), citycard::wire::REJECTED);
}

TEST_F(ServiceTest, PingPongEchoesNonceAndRequestId) {
  Envelope ping;
  ping.set_request_id(5);
  ping.mutable_ping()->set_nonce(0xDEADBEEF);
  const Envelope reply = call(ping);
  ASSERT_TRUE(reply.has_pong());
  EXPECT_EQ(reply.pong().nonce(), 0xDEADBEEFu);
  EXPECT_EQ(reply.request_id(), 5u);
}

TEST_F(ServiceTest, BalanceQueryAnswersWhatTheBackendBelieves) {
  ASSERT_TRUE(backend->upload(make_batch(bus, {purchase(alice, bus, 250, now())})).ok());
  Envelope q;
  q.set_request_id(9);
  q.mutable_balance_query()->set_card_serial(pw::field(alice.image.serial));
  const Envelope reply = call(q);
  ASSERT_TRUE(reply.has_balance_reply()) << reply.DebugString();
  EXPECT_EQ(reply.request_id(), 9u);
  EXPECT_EQ(reply.balance_reply().balance_fen(), 750);
  EXPECT_EQ(reply.balance_reply().last_counter(), 0u);
  EXPECT_EQ(reply.balance_reply().card_serial(), pw::field(alice.image.serial));

  q.mutable_balance_query()->set_card_serial(pw::field(array_from_hex<8>("0000000000000001")));
  const Envelope unknown = call(q);
  ASSERT_TRUE(unknown.has_error());
  EXPECT_EQ(unknown.error().code(), citycard::wire::UNKNOWN_CARD);
  EXPECT_EQ(unknown.request_id(), 9u);

  q.mutable_balance_query()->set_card_serial("short");
  EXPECT_EQ(call(q).error().code(), citycard::wire::MALFORMED);
}

TEST_F(ServiceTest, RefusedBatchIsAnErrorReplyNotAnAck) {
  auto batch = make_batch(bus, {purchase(alice, bus, 200, now())});
  batch.set_batch_mac(std::string(4, '\0'));
  Envelope req;
  req.set_request_id(3);
  *req.mutable_upload() = batch;
  const Envelope reply = call(req);
  ASSERT_TRUE(reply.has_error());
  EXPECT_EQ(reply.error().code(), citycard::wire::BAD_SIGNATURE);
  EXPECT_EQ(reply.request_id(), 3u);
  EXPECT_EQ(card(alice).balance_fen, 1'000);
}

TEST_F(ServiceTest, RepliesAreNotServed) {
  Envelope e;
  e.set_request_id(4);
  e.mutable_upload_ack()->set_batch_no(1);
  const Envelope reply = call(e);
  ASSERT_TRUE(reply.has_error());
  EXPECT_EQ(reply.error().code(), citycard::wire::UNSUPPORTED);
  EXPECT_EQ(reply.request_id(), 4u);
}

TEST_F(ServiceTest, UploadOverRealZeroMqSockets) {
  zmq::context_t ctx;
  sim::ZmqServer server(ctx, backend->service());
  ASSERT_TRUE(server.bind("tcp://127.0.0.1:*").is_ok());
  std::thread serving([&] { server.serve(); });
  Envelope first, replayed;
  {
    sim::ZmqClient client(ctx, server.endpoint());
    const Bytes frame = testing::upload_frame(
        make_batch(bus, {purchase(alice, bus, 200, now()), purchase(alice, bus, 300, now())}), 11);
    auto r1 = client.call(frame, 10'000);
    auto r2 = client.call(frame, 10'000);  // a terminal that did not hear the first ack
    ASSERT_TRUE(r1.is_ok() && r2.is_ok());
    first = *pw::decode(*r1);
    replayed = *pw::decode(*r2);
  }
  server.stop();
  serving.join();  // from here on the backend is ours again (single-threaded)

  ASSERT_TRUE(first.has_upload_ack()) << first.DebugString();
  EXPECT_EQ(first.request_id(), 11u);
  EXPECT_EQ(first.upload_ack().accepted(), 2u);
  EXPECT_FALSE(first.upload_ack().batch_duplicate());
  ASSERT_TRUE(replayed.has_upload_ack());
  EXPECT_TRUE(replayed.upload_ack().batch_duplicate());
  EXPECT_EQ(replayed.upload_ack().accepted(), 2u);
  EXPECT_EQ(server.requests(), 2u);
  EXPECT_EQ(card(alice).balance_fen, 500);
  EXPECT_EQ(balance(account::payable("bus-co")), -500);
}

}  // namespace
}  // namespace citycard::backend
