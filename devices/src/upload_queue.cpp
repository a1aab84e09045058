#include "citycard/devices/upload_queue.h"

#include <cassert>
#include <string>
#include <utility>

namespace citycard::devices {

namespace wire = protocol::wire;
using citycard::wire::Envelope;
using citycard::wire::SwipeRecord;
using citycard::wire::UploadBatch;

UploadQueue::UploadQueue(UploadQueueOptions options, SamClient& sam, sim::Channel& channel)
    : options_(options), sam_(sam), channel_(channel), next_batch_no_(options.first_batch_no) {
  assert(options_.records_max > 0);
  assert(options_.batch_records_max > 0 && options_.batch_records_max <= kBatchRecordsLimit);
}

UploadQueue::~UploadQueue() = default;

Status UploadQueue::push(SwipeRecord record) {
  if (full()) {
    return Status(Errc::kTooLarge,
                  "upload queue full at " + std::to_string(options_.records_max) + " records");
  }
  records_.push_back(std::move(record));
  return Status::ok();
}

std::optional<std::uint64_t> UploadQueue::pending_batch_no() const {
  if (!pending_) return std::nullopt;
  return pending_->batch_no;
}

void UploadQueue::upload() {
  if (in_flight_) return;
  if (pending_) {
    ++counters_.batches_resent;
  } else if (records_.empty() || !build_batch()) {
    return;
  }
  send();
}

bool UploadQueue::build_batch() {
  UploadBatch batch;
  const std::string& terminal = records_.front().terminal_id();
  batch.set_terminal_id(terminal);
  batch.set_batch_no(next_batch_no_);
  std::int64_t total_fen = 0;
  std::size_t n = 0;
  while (n < records_.size() && n < options_.batch_records_max &&
         records_[n].terminal_id() == terminal) {
    total_fen += records_[n].amount_fen();
    *batch.add_records() = records_[n];
    ++n;
  }
  batch.set_record_count(static_cast<std::uint32_t>(n));
  batch.set_total_amount_fen(total_fen);

  Result<protocol::Mac4> mac = sam_.general_mac(wire::batch_mac_input(batch));
  if (!mac) {
    ++counters_.sign_failures;
    last_failure_ = mac.status();
    return false;
  }
  batch.set_batch_mac(wire::field(*mac));

  Envelope envelope;
  envelope.set_request_id(next_request_id_++);
  *envelope.mutable_upload() = std::move(batch);
  pending_ = Pending{next_batch_no_++, n, wire::encode(envelope)};
  return true;
}

void UploadQueue::send() {
  assert(pending_ && !in_flight_);
  // Set before the request: a channel may answer from inside request() (link down).
  in_flight_ = true;
  ++counters_.batches_sent;
  std::weak_ptr<int> alive = alive_;
  channel_.request(pending_->frame, [this, alive](Result<Bytes> reply) {
    if (alive.expired()) return;
    on_reply(std::move(reply));
  });
}

void UploadQueue::on_reply(Result<Bytes> reply) {
  assert(pending_ && in_flight_);
  in_flight_ = false;
  if (!reply) return fail(reply.status());
  Result<Envelope> envelope = wire::decode(*reply);
  if (!envelope) return fail(envelope.status());
  if (envelope->has_error()) {
    const auto& e = envelope->error();
    return fail(Status(Errc::kRejected, "backend answered " + citycard::wire::Code_Name(e.code()) +
                                            ": " + e.message()));
  }
  if (!envelope->has_upload_ack()) {
    return fail(Status(Errc::kMalformed, "reply to a batch is not an upload ack"));
  }
  const auto& ack = envelope->upload_ack();
  if (ack.batch_no() != pending_->batch_no) {
    return fail(Status(Errc::kMalformed, "ack for batch " + std::to_string(ack.batch_no()) +
                                             ", expected " + std::to_string(pending_->batch_no)));
  }
  records_.erase(records_.begin(),
                 records_.begin() + static_cast<std::ptrdiff_t>(pending_->record_count));
  ++counters_.batches_acked;
  counters_.records_acked += pending_->record_count;
  counters_.records_accepted += ack.accepted();
  counters_.records_duplicate += ack.duplicates();
  counters_.records_rejected += ack.rejected();
  pending_.reset();
  last_failure_ = Status::ok();  // the link works again: the old failure is history
}

void UploadQueue::fail(Status why) {
  ++counters_.failures;
  last_failure_ = std::move(why);
}

}  // namespace citycard::devices
