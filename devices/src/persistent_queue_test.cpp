#include "citycard/devices/persistent_queue.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <set>

#include "citycard/devices/psam.h"
#include "citycard/sim/event_loop.h"
#include "test_support.h"

namespace citycard::devices {
namespace {

namespace wire = protocol::wire;
using citycard::wire::SwipeRecord;
using testing::ScriptedChannel;
using Outcome = ScriptedChannel::Outcome;

SwipeRecord record(std::uint32_t n) {
  SwipeRecord r;
  r.set_card_serial(wire::field(testing::serial_of(1000 + n)));
  r.set_card_counter(n);
  r.set_amount_fen(100 + n);
  r.set_terminal_id(wire::field(testing::kTerminal));
  return r;
}

// The terminal's hardware: survives a "power off" of the queue object.
struct Terminal {
  Terminal() : psam(testing::psam_image()), link(psam), sam(link), channel(loop) {
    // The PSAM signs batches only once signed on (READ BINARY of the terminal id, SELECT).
    if (!sam.open()) ADD_FAILURE() << "PSAM sign-on";
  }
  sim::EventLoop loop;
  Psam psam;
  DirectLink link;
  SamClient sam;
  ScriptedChannel channel;
  std::shared_ptr<MemoryDisk> disk = std::make_shared<MemoryDisk>();
};

DurableQueueOptions small() {
  DurableQueueOptions o;
  o.records_max = 100;
  o.batch_records_max = 4;
  o.compact_bytes_min = 1 << 30;  // off unless a test wants it
  return o;
}

// Every record the clearing centre took in a batch it had not seen before, by card counter.
std::map<std::uint32_t, int> uploaded_once(const testing::FakeClearing& clearing) {
  std::map<std::uint32_t, int> seen;
  std::set<std::uint64_t> batches;
  for (const auto& b : clearing.batches) {
    if (!batches.insert(b.batch_no()).second) continue;  // a duplicate batch changes nothing
    for (const auto& r : b.records()) ++seen[r.card_counter()];
  }
  return seen;
}

TEST(Crc32, KnownAnswer) {
  const std::string s = "123456789";
  EXPECT_EQ(crc32(ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size())),
            0xCBF43926u);
}

TEST(DurableUploadQueue, UploadsLikeTheMemoryQueueAndRestartsEmptyAfterAcks) {
  Terminal t;
  {
    MemoryLogStorage storage(t.disk);
    DurableUploadQueue q(small(), storage, t.sam, t.channel);
    for (std::uint32_t i = 0; i < 6; ++i) ASSERT_TRUE(q.push(record(i)).is_ok());
    q.upload();
    t.loop.run();
    q.upload();
    t.loop.run();
    EXPECT_EQ(q.size(), 0u);
    EXPECT_EQ(q.counters().batches_acked, 2u);
    EXPECT_EQ(storage.syncs(), 6u + 2u);  // each record, each batch before it was sent
  }
  // The last ack was logged without a sync (by design): power loss loses it, and the restart
  // re-sends batch 2 under its own number, which the centre answers as a duplicate.
  t.disk->power_off();
  MemoryLogStorage storage(t.disk);
  DurableUploadQueue q(small(), storage, t.sam, t.channel);
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.pending_batch_no(), 2u);
  EXPECT_EQ(q.next_batch_no(), 3u);
  EXPECT_EQ(q.recovery().torn_bytes_dropped, 0u);
  q.upload();
  t.loop.run();
  EXPECT_EQ(q.size(), 0u);
  ASSERT_EQ(t.channel.clearing.batches.size(), 3u);
  EXPECT_EQ(t.channel.clearing.batches[2].batch_no(), 2u);
  EXPECT_EQ(uploaded_once(t.channel.clearing).size(), 6u);
  // Once a later sync has covered the ack, a restart finds nothing to send.
  ASSERT_TRUE(q.push(record(9)).is_ok());
  t.disk->power_off();
  DurableUploadQueue r(small(), storage, t.sam, t.channel);
  EXPECT_EQ(r.size(), 1u);
  EXPECT_FALSE(r.pending_batch_no());
}

// The proof of issue 5: power fails mid-stream, with a batch in flight whose answer was lost
// and a torn half-written record at the tail. The new instance drops the torn record, keeps
// the rest, re-sends the pending batch under its old number, and in the end the clearing
// centre has every durable record exactly once.
TEST(DurableUploadQueue, PowerLossMidStreamWithTornTailUploadsEverythingExactlyOnce) {
  Terminal t;
  t.channel.script = {Outcome::kTimeout};  // the centre takes batch 1, its answer is lost
  {
    MemoryLogStorage storage(t.disk);
    DurableUploadQueue q(small(), storage, t.sam, t.channel);
    for (std::uint32_t i = 0; i < 7; ++i) ASSERT_TRUE(q.push(record(i)).is_ok());
    q.upload();
    t.loop.run();
    ASSERT_EQ(q.pending_batch_no(), 1u);
    ASSERT_EQ(t.channel.clearing.batches.size(), 1u);
    // Record 7 is being written when power fails: sync it never.
    std::string bytes;
    record(7).SerializeToString(&bytes);
    // Append an unsynced entry by hand through a second queue would double-replay; write the
    // torn bytes as the medium would have them: a plausible header and half a payload.
    Bytes torn = {static_cast<std::uint8_t>(bytes.size()), 0, 0, 0, 1};
    torn.insert(torn.end(), bytes.begin(), bytes.begin() + bytes.size() / 2);
    t.disk->unsynced.insert(t.disk->unsynced.end(), torn.begin(), torn.end());
  }  // the queue object is destroyed: the terminal lost power
  t.disk->power_off(/*torn_keep_bytes=*/1000);

  MemoryLogStorage storage(t.disk);
  DurableUploadQueue q(small(), storage, t.sam, t.channel);
  EXPECT_EQ(q.recovery().records_restored, 7u);
  EXPECT_EQ(q.recovery().pending_batch_no, 1u);
  EXPECT_GT(q.recovery().torn_bytes_dropped, 0u);
  EXPECT_EQ(q.next_batch_no(), 2u);
  ASSERT_TRUE(q.push(record(8)).is_ok());  // appended after the cut, not after the garbage
  for (int i = 0; i < 5 && q.size() > 0; ++i) {
    q.upload();
    t.loop.run();
  }
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(t.channel.clearing.batches[1].batch_no(), 1u);  // the same batch again
  const auto seen = uploaded_once(t.channel.clearing);
  std::map<std::uint32_t, int> want;
  for (std::uint32_t i : {0, 1, 2, 3, 4, 5, 6, 8}) want[i] = 1;
  EXPECT_EQ(seen, want);

  // And a third life sees the log it left: nothing pending, numbers not reused.
  DurableUploadQueue again(small(), storage, t.sam, t.channel);
  EXPECT_EQ(again.size(), 0u);
  EXPECT_EQ(again.next_batch_no(), q.next_batch_no());
}

TEST(DurableUploadQueue, LazySyncLosesOnlyTheUnsyncedRecordsAtPowerLoss) {
  Terminal t;
  DurableQueueOptions o = small();
  o.sync_every_records = 4;
  {
    MemoryLogStorage storage(t.disk);
    DurableUploadQueue q(o, storage, t.sam, t.channel);
    for (std::uint32_t i = 0; i < 6; ++i) ASSERT_TRUE(q.push(record(i)).is_ok());
    EXPECT_EQ(storage.syncs(), 1u);
  }
  t.disk->power_off();
  MemoryLogStorage storage(t.disk);
  DurableUploadQueue q(o, storage, t.sam, t.channel);
  EXPECT_EQ(q.size(), 4u);  // records 4 and 5 were in the page cache only
}

TEST(DurableUploadQueue, ACorruptEntryInTheMiddleStopsTheReplayThere) {
  Terminal t;
  {
    MemoryLogStorage storage(t.disk);
    DurableUploadQueue q(small(), storage, t.sam, t.channel);
    for (std::uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(q.push(record(i)).is_ok());
  }
  // Flip a payload byte of the second entry: its CRC no longer matches.
  const Bytes& d = t.disk->durable;
  const std::size_t first = 4 + 1 + (d[0] | d[1] << 8) + 4;
  const std::size_t total = d.size();
  t.disk->durable[first + 6] ^= 0x01;
  MemoryLogStorage storage(t.disk);
  DurableUploadQueue q(small(), storage, t.sam, t.channel);
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.recovery().torn_bytes_dropped, total - first);
}

TEST(DurableUploadQueue, LinkDownThenUpKeepsTheBatchAndItsNumber) {
  Terminal t;
  t.channel.script = {Outcome::kLinkDown, Outcome::kBusy};
  MemoryLogStorage storage(t.disk);
  DurableUploadQueue q(small(), storage, t.sam, t.channel);
  for (std::uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(q.push(record(i)).is_ok());
  q.upload();
  t.loop.run();
  EXPECT_EQ(q.counters().failures, 1u);
  q.upload();
  t.loop.run();
  EXPECT_EQ(q.counters().failures, 2u);
  q.upload();
  t.loop.run();
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(t.channel.clearing.batches.size(), 1u);
  EXPECT_EQ(t.channel.clearing.batches[0].batch_no(), 1u);
}

TEST(DurableUploadQueue, FullQueueRefusesAndCompactionKeepsTheBatchNumber) {
  Terminal t;
  DurableQueueOptions o = small();
  o.records_max = 2;
  o.compact_bytes_min = 1;
  MemoryLogStorage storage(t.disk);
  {
    DurableUploadQueue q(o, storage, t.sam, t.channel);
    ASSERT_TRUE(q.push(record(0)).is_ok());
    ASSERT_TRUE(q.push(record(1)).is_ok());
    EXPECT_EQ(q.push(record(2)).code(), Errc::kTooLarge);
    q.upload();
    t.loop.run();
    EXPECT_EQ(q.size(), 0u);
    EXPECT_LT(q.log_bytes(), 32u);  // compacted to the base entry
  }
  t.disk->power_off();
  DurableUploadQueue q(o, storage, t.sam, t.channel);
  EXPECT_EQ(q.next_batch_no(), 2u);
}

TEST(PosixLogStorage, SurvivesReopenAndTruncatesATornTail) {
  char dir[] = "/tmp/citycard_pq_XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/queue.log";
  Terminal t;
  {
    PosixLogStorage storage(path);
    DurableUploadQueue q(small(), storage, t.sam, t.channel);
    for (std::uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(q.push(record(i)).is_ok());
    ASSERT_TRUE(storage.append(Bytes{0x40, 0, 0, 0, 1, 2, 3}).is_ok());  // torn tail
  }
  {
    PosixLogStorage storage(path);
    DurableUploadQueue q(small(), storage, t.sam, t.channel);
    EXPECT_EQ(q.size(), 3u);
    EXPECT_EQ(q.recovery().torn_bytes_dropped, 7u);
    q.upload();
    t.loop.run();
    EXPECT_EQ(q.size(), 0u);
  }
  {
    PosixLogStorage storage(path);
    DurableUploadQueue q(small(), storage, t.sam, t.channel);
    EXPECT_EQ(q.size(), 0u);
    EXPECT_EQ(q.recovery().torn_bytes_dropped, 0u);
    EXPECT_EQ(q.next_batch_no(), 2u);
  }
  ::unlink(path.c_str());
  ::rmdir(dir);
}

}  // namespace
}  // namespace citycard::devices
