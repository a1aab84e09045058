#include "citycard/devices/host_session.h"

#include <gtest/gtest.h>

#include <functional>
#include <optional>

#include "citycard/sim/event_loop.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

namespace wire = citycard::wire;
using wire::Envelope;

// Answers each request with `answer(request)`, at once.
class FnChannel final : public sim::Channel {
 public:
  std::function<Envelope(const Envelope&)> answer;
  int requests = 0;
  void request(Bytes frame, ReplyFn on_reply) override {
    ++requests;
    auto e = protocol::wire::decode(frame);
    Envelope r = answer(*e);
    r.set_request_id(e->request_id());
    on_reply(protocol::wire::encode(r));
  }
};

wire::ParamsReply page(std::uint64_t version) {
  wire::ParamsReply p;
  p.set_version(version);
  p.set_latest_version(version);
  return p;
}

TEST(ParamsCache, AppliesPagesWholeAndRefusesBadOnesWithoutChangingAnything) {
  ParamsCache c;
  wire::ParamsReply p = page(3);
  auto* t = p.add_fares();
  t->set_table_id("71");
  t->set_kind(0);
  t->set_flat_fen(200);
  auto* d = p.add_card_type_discounts();
  d->set_card_type(1);
  d->set_discount_bp(5000);
  auto* m = p.add_merchant_discounts();
  m->set_merchant_id("SHOP");
  m->set_discount_bp(300);
  ASSERT_TRUE(c.apply(p, 0).is_ok());
  EXPECT_EQ(c.version(), 3u);
  ASSERT_TRUE(c.fare_policy("71").is_ok());
  EXPECT_EQ(c.fare_policy("71")->flat_fen, 200u);
  EXPECT_EQ(c.fare_policy("71")->card_type_discount_bp[1], 5000u);
  EXPECT_EQ(c.merchant_discount_bp("SHOP", "food"), 300u);  // the merchant's default
  EXPECT_EQ(c.fare_policy("72").status().code(), Errc::kNotFound);

  EXPECT_EQ(c.apply(page(4), 2).code(), Errc::kConflict);  // not our base
  wire::ParamsReply back = page(2);
  EXPECT_EQ(c.apply(back, 3).code(), Errc::kMalformed);  // goes back
  wire::ParamsReply odd = page(5);
  odd.add_removed("firmware/x");
  odd.add_fares()->set_table_id("99");
  EXPECT_EQ(c.apply(odd, 3).code(), Errc::kMalformed);
  wire::ParamsReply bad_type = page(5);
  bad_type.add_card_type_discounts()->set_card_type(9);
  EXPECT_EQ(c.apply(bad_type, 3).code(), Errc::kMalformed);
  EXPECT_EQ(c.version(), 3u);  // nothing of the refused pages was applied
  EXPECT_EQ(c.fare_tables().count("99"), 0u);

  wire::ParamsReply withdraw = page(6);
  withdraw.add_removed("fare/71");
  withdraw.add_removed("card_type/1");
  withdraw.add_removed("merchant_discount/SHOP/");
  ASSERT_TRUE(c.apply(withdraw, 3).is_ok());
  EXPECT_EQ(c.fare_policy("71").status().code(), Errc::kNotFound);
  EXPECT_TRUE(c.card_type_discounts().empty());
  EXPECT_EQ(c.merchant_discount_bp("SHOP", ""), 0u);
}

struct Rig {
  sim::EventLoop loop;
  TerminalClock clock{loop};
  BlacklistCache cache;
  FnChannel channel;
  HostSession host{{testing::kTerminal, "BV-1", "OP", 5}, channel, clock, cache};
  Status run(std::function<void(HostSession::Done)> call) {
    std::optional<Status> out;
    call([&](Status s) { out = s; });
    loop.run();
    return out.value_or(Status(Errc::kInternal, "no answer"));
  }
};

TEST(HostSession, AServerThatAlwaysSaysMoreIsStoppedAtPagesMax) {
  Rig r;
  std::uint64_t v = 0;
  r.channel.answer = [&](const Envelope&) {
    Envelope e;
    auto* p = e.mutable_blacklist_reply();
    p->set_version(++v);
    p->set_latest_version(1'000'000);
    p->set_more(true);
    return e;
  };
  Status s = r.run([&](HostSession::Done d) { r.host.pull_blacklist(std::move(d)); });
  EXPECT_EQ(s.code(), Errc::kTooLarge) << s.to_string();
  EXPECT_EQ(r.channel.requests, 5);
  EXPECT_EQ(r.cache.version(), 5u);  // what was applied stays; the next pull resumes
}

TEST(HostSession, WrongRepliesErrorsAndRefusedPagesAreClearFailures) {
  Rig r;
  r.channel.answer = [](const Envelope&) {
    Envelope e;
    e.mutable_pong()->set_nonce(1);
    return e;
  };
  EXPECT_EQ(r.run([&](HostSession::Done d) { r.host.sign_on(std::move(d)); }).code(),
            Errc::kMalformed);
  r.channel.answer = [](const Envelope&) {
    Envelope e;
    e.mutable_error()->set_code(wire::BUSY);
    return e;
  };
  EXPECT_EQ(r.run([&](HostSession::Done d) { r.host.pull_params(std::move(d)); }).code(),
            Errc::kUnavailable);
  // A first page applies; then a page with a serial of the wrong length is refused whole.
  r.channel.answer = [](const Envelope&) {
    Envelope e;
    e.mutable_blacklist_reply()->set_version(9);
    e.mutable_blacklist_reply()->add_added(std::string(8, '\x01'));
    return e;
  };
  ASSERT_TRUE(r.run([&](HostSession::Done d) { r.host.pull_blacklist(std::move(d)); }).is_ok());
  EXPECT_EQ(r.cache.version(), 9u);
  r.channel.answer = [](const Envelope&) {
    Envelope e;
    e.mutable_blacklist_reply()->set_version(12);
    e.mutable_blacklist_reply()->add_added(std::string(7, '\x01'));  // not 8 bytes
    return e;
  };
  EXPECT_EQ(r.run([&](HostSession::Done d) { r.host.pull_blacklist(std::move(d)); }).code(),
            Errc::kMalformed);
  EXPECT_EQ(r.cache.version(), 9u);
  EXPECT_EQ(r.host.counters().failures, 3u);
  EXPECT_FALSE(r.host.signed_on());
}

TEST(HostSession, SignOnSetsTheClockToTheServersPlusHalfTheRoundTrip) {
  Rig r;
  r.loop.run_until(1'000'000);
  r.channel.answer = [](const Envelope& req) {
    EXPECT_EQ(req.sign_on().device_id(), "BV-1");
    EXPECT_EQ(req.sign_on().operator_id(), "OP");
    Envelope e;
    e.mutable_sign_on_reply()->set_server_time_us(61'000'000);
    e.mutable_sign_on_reply()->set_vehicle("V-1");
    return e;
  };
  ASSERT_TRUE(r.run([&](HostSession::Done d) { r.host.sign_on(std::move(d)); }).is_ok());
  EXPECT_EQ(r.clock.now_us(), 61'000'000);  // the answer came at once: no round trip
  EXPECT_EQ(r.host.counters().last_correction_us, 60'000'000);
  EXPECT_EQ(r.host.registered_vehicle(), "V-1");
  EXPECT_TRUE(r.host.signed_on());
}

}  // namespace
}  // namespace citycard::devices
