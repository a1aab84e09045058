#include "citycard/sim/zmq_transport.h"

#include <gtest/gtest.h>

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
