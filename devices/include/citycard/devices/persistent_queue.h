// A store-and-forward upload queue that survives the terminal's power loss (DB31/T 239: state
// and records survive power loss). Same upload protocol and promises as UploadQueue
// (upload_queue.h): one batch in flight, a built batch keeps its number and records until
// acknowledged, batch numbers never reused. In addition:
//
// - Every record is appended to a log before push() returns (a sale is confirmed only once its
//   record is durable, under the default fsync policy).
// - A batch is written to the log (its number and record count) and synced BEFORE it is sent,
//   so after a restart the same records go out under the same batch number and the backend
//   acknowledges them as a duplicate batch: each record is uploaded exactly once.
// - An acknowledgement is logged after the ack arrives. Losing it to power loss only costs a
//   re-send of that batch, which the backend answers idempotently.
// - On restart the log is replayed: unacknowledged records, the pending batch and the next
//   batch number come back. A torn last write is detected by its length or CRC-32 and dropped
//   (the log is truncated there); anything after a bad entry is not trusted.
// - When everything is acknowledged and the log exceeds compact_bytes_min, it is rewritten
//   (atomically: LogStorage::replace) to one entry carrying the next batch number.
//
// Log format, little-endian, one entry after another:
//   u32 payload_len | u8 kind | payload | u32 crc32(kind | payload)
//   kind 1 record (a serialised wire::SwipeRecord), 2 batch (u64 batch_no, u32 records),
//   3 ack (u64 batch_no), 4 base (u64 next_batch_no).
//
// Storage is reached through LogStorage, so tests use MemoryLogStorage, whose "disk" outlives
// the queue object and can lose unsynced bytes or keep a torn prefix of them at power off.
//
// Single-threaded, like UploadQueue. Does not own the storage, the SAM client or the channel,
// which must outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "citycard/devices/sam_client.h"
#include "citycard/devices/upload_queue.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/transport.h"

namespace citycard::devices {

std::uint32_t crc32(ByteView data);

// An append-only file. Errors are Errc::kIo.
class LogStorage {
 public:
  virtual ~LogStorage();
  virtual Result<Bytes> read_all() = 0;
  virtual Status append(ByteView data) = 0;
  virtual Status sync() = 0;
  virtual Status truncate(std::size_t size_bytes) = 0;
  // Replaces the whole content atomically: after a power loss, either the old or the new.
  virtual Status replace(ByteView data) = 0;
};

// A file on the host: open/write/fsync/ftruncate; replace() writes `path.tmp`, fsyncs and
// renames it over the log.
class PosixLogStorage final : public LogStorage {
 public:
  explicit PosixLogStorage(std::string path);
  ~PosixLogStorage() override;
  PosixLogStorage(const PosixLogStorage&) = delete;
  PosixLogStorage& operator=(const PosixLogStorage&) = delete;

  Result<Bytes> read_all() override;
  Status append(ByteView data) override;
  Status sync() override;
  Status truncate(std::size_t size_bytes) override;
  Status replace(ByteView data) override;

 private:
  Status open_fd();
  std::string path_;
  int fd_ = -1;
};

// The disk of a MemoryLogStorage: what was synced, and what was written but not yet synced
// (the OS page cache). Shared so it outlives the storage object, as a disk outlives a crash.
struct MemoryDisk {
  Bytes durable;
  Bytes unsynced;
  // Power fails: the unsynced bytes are lost, but the first `torn_keep_bytes` of them reached
  // the medium (a torn write).
  void power_off(std::size_t torn_keep_bytes = 0);
};

class MemoryLogStorage final : public LogStorage {
 public:
  explicit MemoryLogStorage(std::shared_ptr<MemoryDisk> disk) : disk_(std::move(disk)) {}
  Result<Bytes> read_all() override;
  Status append(ByteView data) override;
  Status sync() override;
  Status truncate(std::size_t size_bytes) override;
  Status replace(ByteView data) override;
  std::uint64_t syncs() const { return syncs_; }

 private:
  std::shared_ptr<MemoryDisk> disk_;
  std::uint64_t syncs_ = 0;
};

struct DurableQueueOptions {
  std::size_t records_max = 10'000;
  std::size_t batch_records_max = 100;
  // Records are synced every `sync_every_records` appends: 1 (default) makes every confirmed
  // sale durable; N > 1 trades up to N - 1 sales lost at power loss for fewer fsyncs. Batch
  // entries are always synced before sending.
  std::uint32_t sync_every_records = 1;
  std::size_t compact_bytes_min = 64 * 1024;
};

// What the replay at construction found.
struct DurableQueueRecovery {
  std::size_t entries = 0;
  std::size_t records_restored = 0;  // not yet acknowledged
  std::optional<std::uint64_t> pending_batch_no;
  std::size_t torn_bytes_dropped = 0;  // a torn or corrupt tail, cut off
  Status status;                       // a storage error while replaying
};

class DurableUploadQueue {
 public:
  DurableUploadQueue(DurableQueueOptions options, LogStorage& storage, SamClient& sam,
                     sim::Channel& channel);
  ~DurableUploadQueue();
  DurableUploadQueue(const DurableUploadQueue&) = delete;
  DurableUploadQueue& operator=(const DurableUploadQueue&) = delete;

  // Errc::kTooLarge when full; Errc::kIo when the record could not be written (no sale).
  Status push(const citycard::wire::SwipeRecord& record);
  void upload();

  std::size_t size() const { return records_.size(); }
  bool full() const { return records_.size() >= options_.records_max; }
  bool in_flight() const { return in_flight_; }
  std::optional<std::uint64_t> pending_batch_no() const;
  std::uint64_t next_batch_no() const { return next_batch_no_; }
  const std::deque<citycard::wire::SwipeRecord>& records() const { return records_; }
  const UploadCounters& counters() const { return counters_; }
  const Status& last_failure() const { return last_failure_; }
  const DurableQueueRecovery& recovery() const { return recovery_; }
  std::size_t log_bytes() const { return log_bytes_; }

 private:
  struct Pending {
    std::uint64_t batch_no;
    std::size_t record_count;
    Bytes frame;  // empty after a restart until rebuilt
  };
  void replay();
  Status append_entry(std::uint8_t kind, ByteView payload, bool sync);
  bool build_frame(Pending& pending);
  void send();
  void on_reply(Result<Bytes> reply);
  void fail(Status why);
  void maybe_compact();

  DurableQueueOptions options_;
  LogStorage& storage_;
  SamClient& sam_;
  sim::Channel& channel_;
  std::deque<citycard::wire::SwipeRecord> records_;
  std::optional<Pending> pending_;
  bool in_flight_ = false;
  std::uint64_t next_batch_no_ = 1;
  std::uint64_t next_request_id_ = 1;
  std::uint32_t unsynced_records_ = 0;
  std::size_t log_bytes_ = 0;
  UploadCounters counters_;
  Status last_failure_;
  DurableQueueRecovery recovery_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace citycard::devices
