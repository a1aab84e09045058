#include "citycard/devices/upload_queue.h"

#include <gtest/gtest.h>

#include "citycard/devices/psam.h"
#include "citycard/protocol/crypto.h"
#include "citycard/sim/event_loop.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

namespace wire = protocol::wire;
using citycard::wire::SwipeRecord;
using citycard::wire::UploadBatch;

using testing::kRoundTripUs;
using testing::ScriptedChannel;

SwipeRecord record(std::uint32_t i, const protocol::TerminalId& terminal = testing::kTerminal) {
  SwipeRecord r;
  r.set_card_serial(wire::field(testing::serial_of(i)));
  r.set_card_counter(i);
  r.set_amount_fen(100 + i);
  r.set_terminal_id(wire::field(terminal));
  r.set_terminal_seq(i);
  r.set_tac(wire::field(protocol::Mac4{static_cast<std::uint8_t>(i), 1, 2, 3}));
  return r;
}

UploadBatch batch_of(const Bytes& frame) {
  Result<citycard::wire::Envelope> e = wire::decode(frame);
  EXPECT_TRUE(e.is_ok());
  EXPECT_TRUE(e->has_upload());
  return e->upload();
}

struct Fixture {
  explicit Fixture(UploadQueueOptions options = {100, 3, 1})
      : psam(testing::psam_image()),
        link(psam),
        sam(link),
        channel(loop),
        queue(options, sam, channel) {
    EXPECT_TRUE(sam.open().is_ok());
  }
  sim::EventLoop loop;
  Psam psam;
  DirectLink link;
  SamClient sam;
  ScriptedChannel channel;
  UploadQueue queue;
};

TEST(UploadQueue, BatchesAreBoundedSignedAndNumberedInOrder) {
  Fixture f;
  for (std::uint32_t i = 0; i < 5; ++i) ASSERT_TRUE(f.queue.push(record(i)).is_ok());
  f.queue.upload();
  f.loop.run();
  f.queue.upload();
  f.loop.run();
  ASSERT_EQ(f.channel.frames.size(), 2u);
  const UploadBatch first = batch_of(f.channel.frames[0]);
  const UploadBatch second = batch_of(f.channel.frames[1]);
  EXPECT_EQ(first.batch_no(), 1u);
  EXPECT_EQ(second.batch_no(), 2u);
  ASSERT_EQ(first.records_size(), 3);
  EXPECT_EQ(first.record_count(), 3u);
  EXPECT_EQ(first.total_amount_fen(), 100 + 101 + 102);
  EXPECT_EQ(first.terminal_id(), wire::field(testing::kTerminal));
  EXPECT_EQ(first.records(2).card_counter(), 2u);
  EXPECT_EQ(second.record_count(), 2u);
  EXPECT_EQ(second.records(0).card_counter(), 3u);

  // The backend's check: the terminal's batch key from the batch master.
  const auto key = protocol::terminal_batch_key(testing::issuer_keys().batch, testing::kTerminal);
  for (const UploadBatch& b : {first, second}) {
    protocol::Mac4 mac{};
    ASSERT_TRUE(wire::to_mac(b.batch_mac(), mac));
    EXPECT_EQ(to_hex(mac), to_hex(protocol::crypto::tdes_mac(key, wire::batch_mac_input(b))));
  }
  EXPECT_EQ(f.queue.size(), 0u);
  EXPECT_EQ(f.queue.counters().batches_acked, 2u);
  EXPECT_EQ(f.queue.counters().records_acked, 5u);
  EXPECT_EQ(f.queue.counters().records_accepted, 5u);
}

TEST(UploadQueue, RecordsLeaveOnlyWhenTheAckArrives) {
  Fixture f;
  for (std::uint32_t i = 0; i < 2; ++i) ASSERT_TRUE(f.queue.push(record(i)).is_ok());
  f.queue.upload();
  EXPECT_TRUE(f.queue.in_flight());
  EXPECT_EQ(f.queue.size(), 2u);
  f.queue.upload();  // one batch in flight at a time
  EXPECT_EQ(f.channel.frames.size(), 1u);
  ASSERT_TRUE(f.queue.push(record(7)).is_ok());  // arrives while the batch is in flight
  f.loop.run_until(kRoundTripUs - 1);
  EXPECT_EQ(f.queue.size(), 3u);
  f.loop.run();
  EXPECT_FALSE(f.queue.in_flight());
  EXPECT_FALSE(f.queue.pending_batch_no());
  ASSERT_EQ(f.queue.size(), 1u);
  EXPECT_EQ(f.queue.records().front().card_counter(), 7u);
}

TEST(UploadQueue, ALostAckResendsTheSameBatchAndTheBackendSeesADuplicate) {
  Fixture f;
  for (std::uint32_t i = 0; i < 2; ++i) ASSERT_TRUE(f.queue.push(record(i)).is_ok());
  f.channel.script = {ScriptedChannel::Outcome::kTimeout, ScriptedChannel::Outcome::kLinkDown,
                      ScriptedChannel::Outcome::kBusy, ScriptedChannel::Outcome::kWrongBatchNo,
                      ScriptedChannel::Outcome::kAnswer};
  f.queue.upload();
  f.loop.run();
  EXPECT_EQ(f.queue.size(), 2u);
  EXPECT_EQ(f.queue.last_failure().code(), Errc::kTimeout);
  ASSERT_TRUE(f.queue.push(record(9)).is_ok());  // must not join the pending batch
  for (int attempt = 0; attempt < 4; ++attempt) {
    f.queue.upload();
    f.loop.run();
  }
  ASSERT_EQ(f.channel.frames.size(), 5u);
  for (const Bytes& frame : f.channel.frames) {
    EXPECT_EQ(frame, f.channel.frames[0]) << "a re-send is the same batch, byte for byte";
  }
  ASSERT_EQ(f.channel.clearing.batches.size(), 2u);
  EXPECT_EQ(f.queue.counters().failures, 4u);
  EXPECT_EQ(f.queue.counters().batches_sent, 5u);
  EXPECT_EQ(f.queue.counters().batches_resent, 4u);
  EXPECT_EQ(f.queue.counters().batches_acked, 1u);
  ASSERT_EQ(f.queue.size(), 1u);
  EXPECT_EQ(f.queue.next_batch_no(), 2u);

  f.queue.upload();
  f.loop.run();
  EXPECT_EQ(batch_of(f.channel.frames.back()).batch_no(), 2u);
  EXPECT_EQ(f.queue.size(), 0u);
}

TEST(UploadQueue, AnAcknowledgedUploadClearsTheLastFailure) {
  Fixture f;
  ASSERT_TRUE(f.queue.push(record(1)).is_ok());
  f.channel.script = {ScriptedChannel::Outcome::kTimeout, ScriptedChannel::Outcome::kAnswer};
  f.queue.upload();
  f.loop.run();
  ASSERT_EQ(f.queue.last_failure().code(), Errc::kTimeout);
  f.queue.upload();
  f.loop.run();
  EXPECT_EQ(f.queue.size(), 0u);
  EXPECT_TRUE(f.queue.last_failure().is_ok()) << f.queue.last_failure().message();
  EXPECT_EQ(f.queue.counters().failures, 1u);  // the count keeps the history
}

TEST(UploadQueue, AFullQueueRefusesRecordsAndKeepsTheOldOnes) {
  Fixture f(UploadQueueOptions{3, 2, 1});
  for (std::uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(f.queue.push(record(i)).is_ok());
  EXPECT_TRUE(f.queue.full());
  const Status s = f.queue.push(record(3));
  EXPECT_EQ(s.code(), Errc::kTooLarge);
  EXPECT_EQ(f.queue.size(), 3u);
  EXPECT_EQ(f.queue.records().back().card_counter(), 2u);
}

TEST(UploadQueue, ABatchHoldsOneTerminalsRecords) {
  Fixture f;
  const auto other = array_from_hex<6>("0000000000ff");
  ASSERT_TRUE(f.queue.push(record(0)).is_ok());
  ASSERT_TRUE(f.queue.push(record(1, other)).is_ok());
  f.queue.upload();
  f.loop.run();
  EXPECT_EQ(batch_of(f.channel.frames[0]).record_count(), 1u);
  EXPECT_EQ(f.queue.size(), 1u);
}

TEST(UploadQueue, ASigningFailureSendsNothingAndKeepsTheBatchNumber) {
  sim::EventLoop loop;
  Psam psam(testing::psam_image());
  DirectLink link(psam);
  SamClient sam(link);  // never opened: the PSAM answers 80FA with 6985
  ScriptedChannel channel(loop);
  UploadQueue queue(UploadQueueOptions{}, sam, channel);
  ASSERT_TRUE(queue.push(record(0)).is_ok());
  queue.upload();
  EXPECT_TRUE(channel.frames.empty());
  EXPECT_EQ(queue.counters().sign_failures, 1u);
  EXPECT_EQ(queue.last_failure().code(), Errc::kRejected);
  EXPECT_EQ(queue.next_batch_no(), 1u);
  ASSERT_TRUE(sam.open().is_ok());
  queue.upload();
  loop.run();
  EXPECT_EQ(batch_of(channel.frames.at(0)).batch_no(), 1u);
  EXPECT_EQ(queue.size(), 0u);
}

TEST(UploadQueue, AReplyAfterTheQueueIsGoneIsIgnored) {
  sim::EventLoop loop;
  Psam psam(testing::psam_image());
  DirectLink link(psam);
  SamClient sam(link);
  ASSERT_TRUE(sam.open().is_ok());
  ScriptedChannel channel(loop);
  {
    UploadQueue queue(UploadQueueOptions{}, sam, channel);
    ASSERT_TRUE(queue.push(record(0)).is_ok());
    queue.upload();
  }
  loop.run();  // the reply finds the queue gone; under ASan a use-after-free would show here
  EXPECT_EQ(channel.clearing.batches.size(), 1u);
}

}  // namespace
}  // namespace citycard::devices
