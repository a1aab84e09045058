#include "citycard/devices/bus_validator.h"

#include <gtest/gtest.h>

#include <memory>

#include "citycard/devices/cpu_card.h"
#include "citycard/protocol/crypto.h"
#include "citycard/sim/event_loop.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

namespace wire = protocol::wire;
namespace crypto = protocol::crypto;
using testing::card_image;
using testing::kTerminal;
using testing::ScriptedChannel;

// 2024-03-15 06:00:00 at clock zero. A function, not a static: protocol's calendar tables
// are themselves initialised at static-initialisation time.
std::int64_t origin() {
  return protocol::epoch2000_from_datetime(array_from_hex<7>("20240315060000"));
}

BusValidatorConfig config() {
  BusValidatorConfig c;
  c.device_id = "BV-0042";
  c.operator_id = "SH-BUS-1";
  c.route = "71";
  c.vehicle = "沪A-12345";
  c.fare_fen = 200;
  c.calendar_origin_epoch2000_s = origin();
  c.queue_records_max = 50;
  c.batch_size_max = 4;
  c.upload_interval_us = 60'000'000;
  return c;
}

struct Bus {
  explicit Bus(BusValidatorConfig c = config())
      : psam(testing::psam_image()), channel(loop), validator(std::move(c), psam, loop, channel) {}

  TapResult tap(CpuCard& card) {
    card.reset();  // a new tap: the card has just entered the field
    DirectLink link(card);
    return validator.tap(link);
  }

  sim::EventLoop loop;
  Psam psam;
  ScriptedChannel channel;
  BusValidator validator;
};

TEST(BusValidator, ATapChargesTheFareAndQueuesACompleteRecord) {
  Bus bus;
  const protocol::CardImage image = card_image(31, 1000);
  CpuCard card(image, sim::Rng(1));
  bus.loop.run_until((2 * 3600 + 5 * 60 + 7) * 1'000'000LL + 999'999);

  const TapResult r = bus.tap(card);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(card.balance_fen(), 800u);
  const citycard::wire::SwipeRecord& rec = r.record;
  EXPECT_EQ(rec.card_serial(), wire::field(image.serial));
  EXPECT_EQ(rec.card_counter(), 0u);
  EXPECT_EQ(rec.balance_before_fen(), 1000);
  EXPECT_EQ(rec.amount_fen(), 200);
  EXPECT_EQ(rec.txn_type(), protocol::txn::kPurchase);
  EXPECT_EQ(rec.terminal_id(), wire::field(kTerminal));
  EXPECT_EQ(rec.terminal_seq(), 1u);
  EXPECT_EQ(rec.datetime(), wire::field(array_from_hex<7>("20240315080507")));
  EXPECT_EQ(rec.key_version(), 1u);
  EXPECT_EQ(rec.algorithm_id(), 0u);
  EXPECT_EQ(rec.operator_id(), "SH-BUS-1");
  EXPECT_EQ(rec.route(), "71");
  EXPECT_EQ(rec.vehicle(), "沪A-12345");
  EXPECT_EQ(rec.device(), "BV-0042");
  EXPECT_EQ(rec.fare_full_fen(), 200);
  // What the backend will check: the TAC under the card's TAC key.
  protocol::DateTime7 dt{};
  ASSERT_TRUE(wire::to_datetime(rec.datetime(), dt));
  const protocol::Mac4 tac = crypto::purchase_tac(crypto::tac_key(image.algorithm, image.dtk), 200,
                                                  protocol::txn::kPurchase, kTerminal, 1, dt);
  EXPECT_EQ(rec.tac(), wire::field(tac));
  // The card's own log agrees with the record.
  ASSERT_EQ(card.log().size(), 1u);
  EXPECT_EQ(card.log()[0].datetime, dt);
  EXPECT_EQ(card.log()[0].terminal, kTerminal);

  EXPECT_EQ(bus.validator.queue_length(), 1u);
  EXPECT_EQ(bus.validator.counters().taps, 1u);
  EXPECT_EQ(bus.validator.counters().purchases, 1u);
  EXPECT_GT(r.duration_us, 0) << "a tap reports its simulated card and PSAM time";
  EXPECT_LE(r.duration_us, 300'000);
}

TEST(BusValidator, UploadSendsASignedBatchAndRecordsLeaveOnTheAck) {
  Bus bus;
  std::vector<std::unique_ptr<CpuCard>> cards;
  for (std::uint64_t i = 0; i < 6; ++i) {
    cards.push_back(std::make_unique<CpuCard>(card_image(i, 1000), sim::Rng(i)));
    ASSERT_TRUE(bus.tap(*cards.back()).ok());
  }
  bus.validator.upload();
  EXPECT_EQ(bus.validator.queue_length(), 6u) << "nothing leaves before the ack";
  bus.loop.run();
  EXPECT_EQ(bus.validator.queue_length(), 2u);

  ASSERT_EQ(bus.channel.clearing.batches.size(), 1u);
  const citycard::wire::UploadBatch& b = bus.channel.clearing.batches[0];
  EXPECT_EQ(b.batch_no(), 1u);
  EXPECT_EQ(b.record_count(), 4u);
  EXPECT_EQ(b.total_amount_fen(), 800);
  const auto key = protocol::terminal_batch_key(testing::issuer_keys().batch, kTerminal);
  EXPECT_EQ(b.batch_mac(), wire::field(crypto::tdes_mac(key, wire::batch_mac_input(b))));
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(b.records(i).terminal_seq(), static_cast<std::uint32_t>(i + 1));

  EXPECT_EQ(bus.validator.upload_counters().batches_acked, 1u);
  EXPECT_EQ(bus.validator.upload_counters().records_acked, 4u);
}

TEST(BusValidator, ALostAckResendsTheSameBatchNumber) {
  Bus bus;
  CpuCard card(card_image(5, 1000), sim::Rng(5));
  ASSERT_TRUE(bus.tap(card).ok());
  bus.channel.script = {ScriptedChannel::Outcome::kTimeout};
  bus.validator.upload();
  bus.loop.run();
  EXPECT_EQ(bus.validator.queue_length(), 1u);
  ASSERT_TRUE(bus.tap(card).ok());  // a new sale meanwhile goes to the next batch
  bus.validator.upload();
  bus.loop.run();
  ASSERT_EQ(bus.channel.clearing.batches.size(), 2u);
  EXPECT_EQ(bus.channel.clearing.batches[0].batch_no(), 1u);
  EXPECT_EQ(bus.channel.clearing.batches[1].batch_no(), 1u);
  EXPECT_EQ(bus.channel.clearing.batches[1].record_count(), 1u);
  EXPECT_EQ(bus.validator.queue_length(), 1u);
  bus.validator.upload();
  bus.loop.run();
  EXPECT_EQ(bus.channel.clearing.batches.back().batch_no(), 2u);
  EXPECT_EQ(bus.validator.queue_length(), 0u);
}

TEST(BusValidator, AFullQueueRefusesTapsWithoutChargingTheCard) {
  BusValidatorConfig c = config();
  c.queue_records_max = 2;
  Bus bus(c);
  CpuCard card(card_image(8, 1000), sim::Rng(8));
  ASSERT_TRUE(bus.tap(card).ok());
  ASSERT_TRUE(bus.tap(card).ok());
  const TapResult refused = bus.tap(card);
  EXPECT_EQ(refused.refusal, Refusal::kQueueFull);
  EXPECT_EQ(card.balance_fen(), 600u);
  EXPECT_EQ(bus.validator.counters().refused(Refusal::kQueueFull), 1u);
  EXPECT_EQ(bus.validator.queue_length(), 2u);

  bus.validator.upload();
  bus.loop.run();
  EXPECT_TRUE(bus.tap(card).ok()) << "the upload made room";
  EXPECT_EQ(bus.validator.counters().purchases, 3u);
}

TEST(BusValidator, RefusalsAreCountedByReason) {
  Bus bus;
  CpuCard poor(card_image(9, 150), sim::Rng(9));
  const TapResult r = bus.tap(poor);
  EXPECT_EQ(r.refusal, Refusal::kInsufficientBalance);
  EXPECT_EQ(r.sw, protocol::sw::kInsufficientBalance);
  EXPECT_EQ(bus.validator.counters().refused(Refusal::kInsufficientBalance), 1u);
  EXPECT_EQ(bus.validator.counters().taps, 1u);
  EXPECT_EQ(bus.validator.counters().purchases, 0u);
  EXPECT_EQ(bus.validator.queue_length(), 0u);
}

TEST(BusValidator, ATornTapIsCompletedByTheNextTapAndUploadedOnce) {
  Bus bus;
  CpuCard card(card_image(10, 1000), sim::Rng(10));
  {
    DirectLink direct(card);
    TearingLink link(direct);
    link.tear_at(3, TearingLink::When::kAfterCommand);  // the DEBIT's answer is lost
    EXPECT_EQ(bus.validator.tap(link).refusal, Refusal::kTorn);
  }
  EXPECT_EQ(bus.validator.queue_length(), 0u);
  const TapResult again = bus.tap(card);
  ASSERT_TRUE(again.ok()) << again.detail;
  EXPECT_TRUE(again.recovered);
  EXPECT_EQ(card.balance_fen(), 800u);
  EXPECT_EQ(bus.validator.queue_length(), 1u);
  EXPECT_EQ(bus.validator.counters().recovered, 1u);
  EXPECT_EQ(bus.validator.counters().refused(Refusal::kTorn), 1u);
}

TEST(BusValidator, PollUploadsOnTheIntervalOrWhenAFullBatchWaits) {
  Bus bus;
  std::vector<std::unique_ptr<CpuCard>> cards;
  auto tap_new_card = [&] {
    cards.push_back(std::make_unique<CpuCard>(card_image(cards.size(), 1000), sim::Rng(1)));
    ASSERT_TRUE(bus.tap(*cards.back()).ok());
  };
  tap_new_card();
  bus.validator.poll();
  EXPECT_TRUE(bus.channel.frames.empty()) << "one record and the interval not yet up";
  bus.loop.run_until(bus.validator.next_upload_at_us());
  bus.validator.poll();
  bus.loop.run();
  EXPECT_EQ(bus.channel.frames.size(), 1u);
  EXPECT_EQ(bus.validator.queue_length(), 0u);

  for (int i = 0; i < 4; ++i) tap_new_card();  // a full batch (batch_size_max = 4)
  bus.channel.script = {ScriptedChannel::Outcome::kTimeout};
  bus.validator.poll();
  bus.loop.run();
  EXPECT_EQ(bus.channel.frames.size(), 2u) << "a full batch goes before the interval";
  bus.validator.poll();
  EXPECT_EQ(bus.channel.frames.size(), 2u) << "a retry waits for the interval";
  bus.loop.run_until(bus.validator.next_upload_at_us());
  bus.validator.poll();
  bus.loop.run();
  EXPECT_EQ(bus.channel.frames.size(), 3u);
  EXPECT_EQ(bus.channel.frames[2], bus.channel.frames[1]);
  EXPECT_EQ(bus.validator.queue_length(), 0u);
}

// The same validator over the simulated network of sim/, link cut and restored.
TEST(BusValidator, WorksOverTheSimulatedNetworkThroughALinkOutage) {
  sim::EventLoop loop;
  testing::FakeClearing clearing;
  sim::SimNetwork net(loop, sim::Rng(99), sim::NetworkOptions{});
  std::unique_ptr<sim::Channel> channel = net.connect(clearing, "BV-0042");
  Psam psam(testing::psam_image());
  BusValidator validator(config(), psam, loop, *channel);
  CpuCard card(card_image(12, 1000), sim::Rng(12));
  DirectLink link(card);
  ASSERT_TRUE(validator.tap(link).ok());

  net.set_link_up("BV-0042", false);
  validator.upload();
  loop.run();
  EXPECT_EQ(validator.upload_counters().failures, 1u);
  EXPECT_EQ(validator.upload_counters().batches_acked, 0u);
  EXPECT_EQ(validator.queue_length(), 1u);

  net.set_link_up("BV-0042", true);
  validator.upload();
  loop.run();
  EXPECT_EQ(validator.upload_counters().batches_acked, 1u);
  EXPECT_EQ(validator.queue_length(), 0u);
  ASSERT_EQ(clearing.batches.size(), 1u);
  EXPECT_EQ(clearing.batches[0].batch_no(), 1u);
}

}  // namespace
}  // namespace citycard::devices
