#include "citycard/devices/card_link.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace citycard::devices {
namespace {

using protocol::Command;
using protocol::Response;

// A card that records the raw bytes it was given and answers with scripted bytes.
struct BytesCard {
  Bytes process(ByteView capdu) {
    seen.emplace_back(capdu.begin(), capdu.end());
    return answer;
  }
  std::vector<Bytes> seen;
  Bytes answer = from_hex("12349000");
};

TEST(DirectLink, GoesThroughTheByteEncodingsBothWays) {
  BytesCard card;
  DirectLink link(card);
  const Command c{0x80, 0x5C, 0x00, 0x02, {}, 4};
  Result<Response> r = link.transceive(c);
  ASSERT_TRUE(r.is_ok());
  ASSERT_EQ(card.seen.size(), 1u);
  EXPECT_EQ(to_hex(card.seen[0]), "805c000204");
  EXPECT_EQ(r->data, from_hex("1234"));
  EXPECT_EQ(r->sw, 0x9000);
  EXPECT_EQ(link.exchanges(), 1u);
}

TEST(DirectLink, AnAnswerThatIsNoRapduIsMalformedAndNotCounted) {
  BytesCard card;
  card.answer = from_hex("90");
  DirectLink link(card);
  Result<Response> r = link.transceive(Command{0x00, 0xB0, 0x95, 0x00, {}, 0x1E});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::kMalformed);
  EXPECT_EQ(link.exchanges(), 0u);
}

TEST(DirectLink, TraceHookSeesEveryExchangeInOrder) {
  BytesCard card;
  std::vector<std::string> trace;
  DirectLink link(card, [&](const Command& c, const Response& r, std::int64_t duration_us) {
    EXPECT_EQ(duration_us, 0) << "a card that tells no timing takes no time";
    trace.push_back(c.to_string() + " -> " + to_hex(r.encode()));
  });
  ASSERT_TRUE(
      link.transceive(Command{0x00, 0xA4, 0x04, 0x00, from_hex("A000000632010105"), 256}).is_ok());
  card.answer = from_hex("6A82");
  ASSERT_TRUE(link.transceive(Command{0x80, 0x5C, 0x00, 0x02, {}, 4}).is_ok());
  ASSERT_EQ(trace.size(), 2u);
  EXPECT_EQ(trace[0], "00A4040008a00000063201010500 -> 12349000");
  EXPECT_EQ(trace[1], "805C000204 -> 6a82");
}

TEST(TearingLink, TearBeforeTheCommandKeepsItFromTheCard) {
  BytesCard card;
  DirectLink direct(card);
  TearingLink link(direct);
  link.tear_at(1, TearingLink::When::kBeforeCommand);
  const Command c{0x80, 0x5C, 0x00, 0x02, {}, 4};
  EXPECT_TRUE(link.transceive(c).is_ok());
  Result<Response> torn = link.transceive(c);
  ASSERT_FALSE(torn.is_ok());
  EXPECT_EQ(torn.status().code(), Errc::kTorn);
  EXPECT_EQ(card.seen.size(), 1u);
  EXPECT_TRUE(link.torn());
  EXPECT_EQ(link.transceive(c).status().code(), Errc::kTorn) << "the card stays out of the field";
  EXPECT_EQ(card.seen.size(), 1u);
}

TEST(TearingLink, TearAfterTheCommandLetsTheCardActButLosesTheAnswer) {
  BytesCard card;
  DirectLink direct(card);
  TearingLink link(direct);
  link.tear_at(0, TearingLink::When::kAfterCommand);
  Result<Response> torn = link.transceive(Command{0x80, 0x54, 0x01, 0x00, from_hex("01"), 8});
  ASSERT_FALSE(torn.is_ok());
  EXPECT_EQ(torn.status().code(), Errc::kTorn);
  EXPECT_EQ(card.seen.size(), 1u);
  EXPECT_EQ(direct.exchanges(), 1u);
}

TEST(DirectLink, AnEmptyAnswerIsACardThatWentSilent) {
  BytesCard card;
  card.answer = {};
  DirectLink link(card);
  Result<Response> r = link.transceive(Command{0x80, 0x5C, 0x00, 0x02, {}, 4});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::kTorn);
}

// A card that tells its air interface and work time, as CpuCard does.
struct TimedCard {
  Bytes process(ByteView) {
    return from_hex(
        "00000064"
        "9000");
  }
  LinkTiming link_timing() const { return LinkTiming{LinkTiming::Interface::kIsoDep, {}, {}}; }
  std::int64_t last_processing_us() const { return 2'000; }
};

TEST(DirectLink, TimesEachExchangeAndChargesActivationOnceAndTracesTheDuration) {
  TimedCard card;
  std::vector<std::int64_t> traced;
  DirectLink link(card, [&](const Command&, const Response& r, std::int64_t us) {
    EXPECT_EQ(r.sw, 0x9000);
    traced.push_back(us);
  });
  const Command balance{0x80, 0x5C, 0x00, 0x02, {}, 4};
  ASSERT_TRUE(link.transceive(balance).is_ok());
  ASSERT_TRUE(link.transceive(balance).is_ok());
  const ReaderTiming reader;
  const std::int64_t exchange = timing::iso_dep_exchange_us(Iso14443Picc{}, reader, 5, 6, 2'000);
  ASSERT_EQ(traced.size(), 2u);
  EXPECT_EQ(traced[1], exchange);
  EXPECT_EQ(traced[0], exchange + timing::activation_us(Iso14443Picc{}, reader, true));
  EXPECT_EQ(link.elapsed_us(), traced[0] + traced[1]);
  EXPECT_EQ(link.last_exchange_us(), exchange);
}

TEST(TearingLink, TearDuringTheCommandCutsThePowerInsideIt) {
  struct CuttableCard {
    Bytes process(ByteView) { return armed ? Bytes{} : from_hex("9000"); }
    bool arm_power_cut(std::uint32_t pages) {
      armed = true;
      at = pages;
      return true;
    }
    bool armed = false;
    std::uint32_t at = 0;
  } card;
  DirectLink direct(card);
  TearingLink link(direct);
  link.tear_at(0, TearingLink::When::kDuringCommand, 3);
  EXPECT_EQ(link.transceive(Command{0x80, 0x54, 0x01, 0x00, from_hex("01"), 8}).status().code(),
            Errc::kTorn);
  EXPECT_TRUE(card.armed);
  EXPECT_EQ(card.at, 3u);
}

TEST(RandomTearingLink, TheKnobTearsAtItsRateAndOneSeedReplaysTheSameTears) {
  auto run = [](double p, std::uint64_t seed) {
    std::string pattern;
    int tears = 0;
    for (int presence = 0; presence < 2000; ++presence) {
      BytesCard card;
      DirectLink direct(card);
      RandomTearingLink link(direct, TearingOptions{.tear_probability = p},
                             sim::Rng(seed).fork("presence-" + std::to_string(presence)));
      const bool ok = link.transceive(Command{0x80, 0x5C, 0x00, 0x02, {}, 4}).is_ok();
      pattern += ok ? '.' : 'x';
      tears += !ok;
      if (!ok) {
        EXPECT_TRUE(link.torn());
        EXPECT_TRUE(link.tear_kind().has_value());
        EXPECT_FALSE(link.transceive(Command{0x80, 0x5C, 0x00, 0x02, {}, 4}).is_ok())
            << "out of the field for good";
        // A tear before the command keeps it from the card; after or during, the card saw it.
        EXPECT_EQ(card.seen.size(),
                  *link.tear_kind() == TearingLink::When::kBeforeCommand ? 0u : 1u);
      }
    }
    return std::make_pair(pattern, tears);
  };
  const auto [a, tears_a] = run(0.1, 42);
  const auto [b, tears_b] = run(0.1, 42);
  EXPECT_EQ(a, b) << "same seed, same tears";
  EXPECT_NEAR(tears_a, 200, 60) << "about 10 % of 2000";
  EXPECT_EQ(run(0.0, 42).second, 0);
  EXPECT_EQ(run(1.0, 42).second, 2000);
  EXPECT_NE(run(0.1, 43).first, a);
}

}  // namespace
}  // namespace citycard::devices
