#include "citycard/sim/transport.h"

#include <gtest/gtest.h>

namespace citycard::sim {
namespace {

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
  SimNetwork net(loop, Rng(1), NetworkOptions{1000, 0, 0.0, 1'000'000});
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
  SimNetwork net(loop, Rng(1), NetworkOptions{1000, 0, 1.0, 50'000});
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
