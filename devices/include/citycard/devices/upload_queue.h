// A terminal's store-and-forward queue of clearing records, and the uploader that drains it to
// the clearing centre in batches signed by the PSAM.
//
// Promises:
// - A record leaves the queue only when the backend has acknowledged the batch that carries
//   it. A full queue refuses new records (push() fails) rather than dropping old ones.
// - At most one batch is in flight. A batch, once built, keeps its batch_no, its records and
//   its bytes until acknowledged: after a timeout, a link failure, an error reply or an
//   unreadable reply, the next upload() re-sends exactly the same frame, which the backend
//   acknowledges idempotently. Batch numbers increase and are never reused.
// - A batch holds consecutive records of one terminal id (a PSAM swapped in the slot starts a
//   new batch) and at most batch_records_max of them; batch_mac is the PSAM's 80FA MAC over
//   protocol::wire::batch_mac_input.
//
// Not persistent yet: a power loss loses the queue (a later store will keep it).
// Single-threaded: upload() and the channel's reply callbacks run on the owner's thread. The
// queue may be destroyed with a request outstanding; the late reply is then ignored. Does not
// own the SAM client or the channel, which must outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>

#include "citycard/devices/sam_client.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/transport.h"

namespace citycard::devices {

struct UploadQueueOptions {
  std::size_t records_max = 10'000;
  std::size_t batch_records_max = 100;
  // Restored from storage after a restart: a batch number must never be reused, or the
  // backend would take the new batch for a duplicate of the old one.
  std::uint64_t first_batch_no = 1;
};

struct UploadCounters {
  std::uint64_t batches_sent = 0;  // requests sent, re-sends included
  std::uint64_t batches_resent = 0;
  std::uint64_t batches_acked = 0;
  std::uint64_t records_acked = 0;  // records that left the queue
  std::uint64_t records_accepted = 0;
  std::uint64_t records_duplicate = 0;
  std::uint64_t records_rejected = 0;  // acked, but refused by the backend (bad TAC, ...)
  std::int64_t amount_fen_acked = 0;   // the declared totals of acknowledged batches, summed
  std::uint64_t failures = 0;          // timeouts, link down, error or unreadable replies
  std::uint64_t sign_failures = 0;     // the PSAM could not sign a batch
};

class UploadQueue {
 public:
  // Bounds what one batch may carry: a frame of about 1 MiB (wire.h) and a MAC input well
  // under the PSAM's limit.
  static constexpr std::size_t kBatchRecordsLimit = 10'000;

  UploadQueue(UploadQueueOptions options, SamClient& sam, sim::Channel& channel);
  ~UploadQueue();
  UploadQueue(const UploadQueue&) = delete;
  UploadQueue& operator=(const UploadQueue&) = delete;

  // Errc::kTooLarge when the queue is full.
  Status push(citycard::wire::SwipeRecord record);
  // Sends a batch if none is in flight: the pending one again, or a new one when there are
  // records. Replies arrive through the channel's callback.
  void upload();

  std::size_t size() const { return records_.size(); }  // records not yet acknowledged
  bool full() const { return records_.size() >= options_.records_max; }
  bool in_flight() const { return in_flight_; }
  // The batch built and not yet acknowledged, if any.
  std::optional<std::uint64_t> pending_batch_no() const;
  std::uint64_t next_batch_no() const { return next_batch_no_; }
  const std::deque<citycard::wire::SwipeRecord>& records() const { return records_; }
  const UploadCounters& counters() const { return counters_; }
  // Why the last attempt failed; ok when none has or when an upload has been acknowledged since.
  const Status& last_failure() const { return last_failure_; }

 private:
  struct Pending {
    std::uint64_t batch_no;
    std::size_t record_count;
    Bytes frame;
  };

  bool build_batch();
  void send();
  void on_reply(Result<Bytes> reply);
  void fail(Status why);

  UploadQueueOptions options_;
  SamClient& sam_;
  sim::Channel& channel_;
  std::deque<citycard::wire::SwipeRecord> records_;
  std::optional<Pending> pending_;
  bool in_flight_ = false;
  std::uint64_t next_batch_no_;
  std::uint64_t next_request_id_ = 1;
  UploadCounters counters_;
  Status last_failure_;
  // Reply callbacks hold a weak reference: a reply after destruction finds it expired.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace citycard::devices
