#include "citycard/devices/persistent_queue.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <utility>

namespace citycard::devices {

namespace wire = protocol::wire;
using citycard::wire::Envelope;
using citycard::wire::SwipeRecord;
using citycard::wire::UploadBatch;

namespace {

constexpr std::uint8_t kRecord = 1;
constexpr std::uint8_t kBatch = 2;
constexpr std::uint8_t kAck = 3;
constexpr std::uint8_t kBase = 4;
constexpr std::size_t kHeaderBytes = 5;   // len(4) kind(1)
constexpr std::size_t kTrailerBytes = 4;  // crc(4)
// A record is a few hundred bytes; anything claiming more is a corrupt length.
constexpr std::uint32_t kPayloadBytesMax = 64 * 1024;

std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}

void put_le(Bytes& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint64_t get_le(ByteView in, std::size_t off, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= std::uint64_t{in[off + i]} << (8 * i);
  return v;
}

Status io_error(const std::string& what) {
  return Status(Errc::kIo, what + ": " + std::strerror(errno));
}

}  // namespace

std::uint32_t crc32(ByteView data) {
  static const std::array<std::uint32_t, 256> table = make_crc_table();
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::uint8_t b : data) c = table[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

LogStorage::~LogStorage() = default;

// ---- PosixLogStorage

PosixLogStorage::PosixLogStorage(std::string path) : path_(std::move(path)) {}
PosixLogStorage::~PosixLogStorage() {
  if (fd_ >= 0) ::close(fd_);
}

Status PosixLogStorage::open_fd() {
  if (fd_ >= 0) return Status::ok();
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) return io_error("open " + path_);
  return Status::ok();
}

Result<Bytes> PosixLogStorage::read_all() {
  if (Status s = open_fd(); !s) return s;
  Bytes out;
  std::array<std::uint8_t, 8192> buf{};
  off_t off = 0;
  for (;;) {
    const ssize_t n = ::pread(fd_, buf.data(), buf.size(), off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("read " + path_);
    }
    if (n == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + n);
    off += n;
  }
  return out;
}

Status PosixLogStorage::append(ByteView data) {
  if (Status s = open_fd(); !s) return s;
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("write " + path_);
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::ok();
}

Status PosixLogStorage::sync() {
  if (Status s = open_fd(); !s) return s;
  if (::fdatasync(fd_) != 0) return io_error("fdatasync " + path_);
  return Status::ok();
}

Status PosixLogStorage::truncate(std::size_t size_bytes) {
  if (Status s = open_fd(); !s) return s;
  if (::ftruncate(fd_, static_cast<off_t>(size_bytes)) != 0) return io_error("ftruncate " + path_);
  return sync();
}

Status PosixLogStorage::replace(ByteView data) {
  const std::string tmp = path_ + ".tmp";
  {
    PosixLogStorage t(tmp);
    if (Status s = t.truncate(0); !s) return s;
    if (Status s = t.append(data); !s) return s;
    if (Status s = t.sync(); !s) return s;
  }
  if (::rename(tmp.c_str(), path_.c_str()) != 0) return io_error("rename " + tmp);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  // The rename itself is durable only once the directory is synced.
  const std::size_t slash = path_.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path_.substr(0, slash);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return open_fd();
}

// ---- MemoryLogStorage

void MemoryDisk::power_off(std::size_t torn_keep_bytes) {
  const std::size_t keep = std::min(torn_keep_bytes, unsynced.size());
  durable.insert(durable.end(), unsynced.begin(),
                 unsynced.begin() + static_cast<std::ptrdiff_t>(keep));
  unsynced.clear();
}

Result<Bytes> MemoryLogStorage::read_all() {
  Bytes all = disk_->durable;
  all.insert(all.end(), disk_->unsynced.begin(), disk_->unsynced.end());
  return all;
}
Status MemoryLogStorage::append(ByteView data) {
  disk_->unsynced.insert(disk_->unsynced.end(), data.begin(), data.end());
  return Status::ok();
}
Status MemoryLogStorage::sync() {
  ++syncs_;
  disk_->durable.insert(disk_->durable.end(), disk_->unsynced.begin(), disk_->unsynced.end());
  disk_->unsynced.clear();
  return Status::ok();
}
Status MemoryLogStorage::truncate(std::size_t size_bytes) {
  (void)sync();
  if (size_bytes < disk_->durable.size()) disk_->durable.resize(size_bytes);
  return Status::ok();
}
Status MemoryLogStorage::replace(ByteView data) {
  disk_->durable.assign(data.begin(), data.end());
  disk_->unsynced.clear();
  return Status::ok();
}

// ---- DurableUploadQueue

DurableUploadQueue::DurableUploadQueue(DurableQueueOptions options, LogStorage& storage,
                                       SamClient& sam, sim::Channel& channel)
    : options_(options), storage_(storage), sam_(sam), channel_(channel) {
  assert(options_.records_max > 0);
  assert(options_.batch_records_max > 0 &&
         options_.batch_records_max <= UploadQueue::kBatchRecordsLimit);
  assert(options_.sync_every_records > 0);
  replay();
}

DurableUploadQueue::~DurableUploadQueue() = default;

void DurableUploadQueue::replay() {
  Result<Bytes> all = storage_.read_all();
  if (!all) {
    recovery_.status = all.status();
    return;
  }
  const Bytes& log = *all;
  std::size_t off = 0;
  std::size_t acked_records = 0;  // records at the front of the log already acknowledged
  std::deque<SwipeRecord> records;
  std::optional<Pending> pending;
  while (off < log.size()) {
    if (log.size() - off < kHeaderBytes + kTrailerBytes) break;
    const auto len = static_cast<std::uint32_t>(get_le(log, off, 4));
    if (len > kPayloadBytesMax || log.size() - off < kHeaderBytes + len + kTrailerBytes) break;
    const ByteView body(log.data() + off + 4, 1 + len);
    if (crc32(body) != get_le(log, off + kHeaderBytes + len, 4)) break;
    const std::uint8_t kind = body[0];
    const ByteView payload = body.subspan(1);
    bool good = true;
    if (kind == kRecord) {
      SwipeRecord r;
      good = r.ParseFromArray(payload.data(), static_cast<int>(payload.size()));
      if (good) records.push_back(std::move(r));
    } else if (kind == kBatch && payload.size() == 12) {
      const std::uint64_t batch_no = get_le(payload, 0, 8);
      pending = Pending{batch_no, static_cast<std::size_t>(get_le(payload, 8, 4)), {}};
      next_batch_no_ = std::max(next_batch_no_, batch_no + 1);
    } else if (kind == kAck && payload.size() == 8) {
      if (pending && pending->batch_no == get_le(payload, 0, 8)) {
        acked_records += pending->record_count;
        pending.reset();
      }
    } else if (kind == kBase && payload.size() == 8) {
      next_batch_no_ = std::max(next_batch_no_, get_le(payload, 0, 8));
    } else {
      good = false;
    }
    if (!good) break;  // a CRC-valid entry we cannot read: stop trusting the log here
    ++recovery_.entries;
    off += kHeaderBytes + len + kTrailerBytes;
  }
  if (off < log.size()) {
    recovery_.torn_bytes_dropped = log.size() - off;
    // Cut the tail off, so new entries do not follow garbage.
    if (Status s = storage_.truncate(off); !s) recovery_.status = s;
  }
  log_bytes_ = off;
  acked_records = std::min(acked_records, records.size());
  records.erase(records.begin(), records.begin() + static_cast<std::ptrdiff_t>(acked_records));
  records_ = std::move(records);
  if (pending && pending->record_count <= records_.size()) pending_ = std::move(pending);
  recovery_.records_restored = records_.size();
  if (pending_) recovery_.pending_batch_no = pending_->batch_no;
}

Status DurableUploadQueue::append_entry(std::uint8_t kind, ByteView payload, bool sync) {
  Bytes entry;
  entry.reserve(kHeaderBytes + payload.size() + kTrailerBytes);
  put_le(entry, payload.size(), 4);
  entry.push_back(kind);
  entry.insert(entry.end(), payload.begin(), payload.end());
  put_le(entry, crc32(ByteView(entry).subspan(4)), 4);
  if (Status s = storage_.append(entry); !s) return s;
  log_bytes_ += entry.size();
  return sync ? storage_.sync() : Status::ok();
}

Status DurableUploadQueue::push(const SwipeRecord& record) {
  if (full()) {
    return Status(Errc::kTooLarge,
                  "upload queue full at " + std::to_string(options_.records_max) + " records");
  }
  std::string bytes;
  record.SerializeToString(&bytes);
  const bool sync = ++unsynced_records_ >= options_.sync_every_records;
  if (Status s = append_entry(
          kRecord, ByteView(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()),
          sync);
      !s) {
    return s;
  }
  if (sync) unsynced_records_ = 0;
  records_.push_back(record);
  return Status::ok();
}

std::optional<std::uint64_t> DurableUploadQueue::pending_batch_no() const {
  if (!pending_) return std::nullopt;
  return pending_->batch_no;
}

bool DurableUploadQueue::build_frame(Pending& pending) {
  UploadBatch batch;
  batch.set_terminal_id(records_.front().terminal_id());
  batch.set_batch_no(pending.batch_no);
  std::int64_t total_fen = 0;
  for (std::size_t i = 0; i < pending.record_count; ++i) {
    total_fen += records_[i].amount_fen();
    *batch.add_records() = records_[i];
  }
  batch.set_record_count(static_cast<std::uint32_t>(pending.record_count));
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
  pending.frame = wire::encode(envelope);
  return true;
}

void DurableUploadQueue::upload() {
  if (in_flight_) return;
  if (pending_) {
    // After a restart the frame is rebuilt from the same records and number: the PSAM's MAC
    // over them is the same, so the backend sees the same batch again.
    if (pending_->frame.empty() && !build_frame(*pending_)) return;
    ++counters_.batches_resent;
    return send();
  }
  if (records_.empty()) return;
  const std::string& terminal = records_.front().terminal_id();
  std::size_t n = 0;
  while (n < records_.size() && n < options_.batch_records_max &&
         records_[n].terminal_id() == terminal) {
    ++n;
  }
  Pending p{next_batch_no_, n, {}};
  if (!build_frame(p)) return;
  // Durable before sent: a batch number the backend may have seen is never given again.
  Bytes payload;
  put_le(payload, p.batch_no, 8);
  put_le(payload, n, 4);
  if (Status s = append_entry(kBatch, payload, true); !s) return fail(s);
  unsynced_records_ = 0;  // the sync above covered them
  ++next_batch_no_;
  pending_ = std::move(p);
  send();
}

void DurableUploadQueue::send() {
  assert(pending_ && !in_flight_);
  in_flight_ = true;  // before the request: a channel may answer from inside request()
  ++counters_.batches_sent;
  std::weak_ptr<int> alive = alive_;
  channel_.request(pending_->frame, [this, alive](Result<Bytes> reply) {
    if (alive.expired()) return;
    on_reply(std::move(reply));
  });
}

void DurableUploadQueue::on_reply(Result<Bytes> reply) {
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
  // Logged without a sync of its own: lost, it costs one idempotent re-send after a restart.
  Bytes payload;
  put_le(payload, pending_->batch_no, 8);
  if (Status s = append_entry(kAck, payload, false); !s) last_failure_ = s;
  for (std::size_t i = 0; i < pending_->record_count; ++i) {
    counters_.amount_fen_acked += records_[i].amount_fen();
  }
  records_.erase(records_.begin(),
                 records_.begin() + static_cast<std::ptrdiff_t>(pending_->record_count));
  ++counters_.batches_acked;
  counters_.records_acked += pending_->record_count;
  counters_.records_accepted += ack.accepted();
  counters_.records_duplicate += ack.duplicates();
  counters_.records_rejected += ack.rejected();
  pending_.reset();
  maybe_compact();
}

void DurableUploadQueue::maybe_compact() {
  if (!records_.empty() || pending_ || log_bytes_ < options_.compact_bytes_min) return;
  Bytes payload;
  put_le(payload, next_batch_no_, 8);
  Bytes entry;
  put_le(entry, payload.size(), 4);
  entry.push_back(kBase);
  entry.insert(entry.end(), payload.begin(), payload.end());
  put_le(entry, crc32(ByteView(entry).subspan(4)), 4);
  if (Status s = storage_.replace(entry); !s) {
    last_failure_ = s;
    return;
  }
  log_bytes_ = entry.size();
  unsynced_records_ = 0;
}

void DurableUploadQueue::fail(Status why) {
  ++counters_.failures;
  last_failure_ = std::move(why);
}

}  // namespace citycard::devices
