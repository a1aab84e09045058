#include "citycard/hil/pn532_frame.h"

#include <algorithm>

#include "citycard/protocol/check.h"

namespace citycard::hil::pn532 {

namespace {

constexpr std::uint8_t kStartCode0 = 0x00;
constexpr std::uint8_t kStartCode1 = 0xFF;
// A decode pass never holds more than one partial frame plus this much new input, which keeps
// the buffer far under kBufferBytesMax (the cap is a safety net, not a normal path).
constexpr std::size_t kFeedChunkBytes = 512;

std::uint8_t data_checksum(std::uint8_t tfi, ByteView data) {
  std::uint8_t sum = tfi;
  for (std::uint8_t b : data) sum = static_cast<std::uint8_t>(sum + b);
  return static_cast<std::uint8_t>(0x100 - sum);
}

}  // namespace

Bytes encode_frame(std::uint8_t tfi, ByteView data) {
  CITYCARD_CHECK(!data.empty() && data.size() <= kFrameDataMax, "PN532 frame data size");
  const std::size_t len = data.size() + 1;  // TFI + data
  Bytes f;
  f.reserve(data.size() + 11);  // the longest header (extended) + DCS + postamble
  f.insert(f.end(), {0x00, kStartCode0, kStartCode1});
  if (data.size() <= kNormalFrameDataMax) {
    f.push_back(static_cast<std::uint8_t>(len));
    f.push_back(static_cast<std::uint8_t>(0x100 - len));
  } else {
    const auto lenm = static_cast<std::uint8_t>(len >> 8);
    const auto lenl = static_cast<std::uint8_t>(len);
    f.insert(f.end(), {0xFF, 0xFF, lenm, lenl, static_cast<std::uint8_t>(0x100 - lenm - lenl)});
  }
  f.push_back(tfi);
  put_bytes(f, data);
  f.push_back(data_checksum(tfi, data));
  f.push_back(0x00);
  return f;
}

const Bytes& ack_frame() {
  static const Bytes kAck{0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00};
  return kAck;
}

const Bytes& nack_frame() {
  static const Bytes kNack{0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00};
  return kNack;
}

const Bytes& error_frame() {
  static const Bytes kError{0x00, 0x00, 0xFF, 0x01, 0xFF, 0x7F, 0x81, 0x00};
  return kError;
}

void FrameDecoder::feed(ByteView bytes, std::int64_t now_us, std::vector<Frame>& out) {
  if (bytes.empty()) return;
  // A gap longer than the timeout ends whatever was partly received, even if expire() was not
  // called in between.
  expire(now_us);
  last_byte_us_ = now_us;
  while (!bytes.empty()) {
    const std::size_t n = std::min(bytes.size(), kFeedChunkBytes);
    buf_.insert(buf_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    bytes = bytes.subspan(n);
    if (buf_.size() > kBufferBytesMax) drop_front(buf_.size() - kBufferBytesMax, true);
    while (decode_one(out)) {
    }
  }
}

bool FrameDecoder::expire(std::int64_t now_us) {
  if (buf_.empty() || now_us - last_byte_us_ < kPartialFrameTimeoutUs) return false;
  // A lone preamble byte is not a frame; anything longer had begun one.
  if (buf_.size() > 1) ++counters_.partial_dropped;
  drop_front(buf_.size(), true);
  return true;
}

std::optional<std::int64_t> FrameDecoder::partial_deadline_us() const {
  if (buf_.empty()) return std::nullopt;
  return last_byte_us_ + kPartialFrameTimeoutUs;
}

void FrameDecoder::drop_front(std::size_t n, bool skipped) {
  if (skipped) counters_.skipped_bytes += n;
  buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(n));
}

bool FrameDecoder::decode_one(std::vector<Frame>& out) {
  std::size_t start = 0;
  while (start + 1 < buf_.size() &&
         !(buf_[start] == kStartCode0 && buf_[start + 1] == kStartCode1)) {
    ++start;
  }
  if (start + 1 >= buf_.size()) {
    // No start code. Keep a trailing 00: it may be the first half of one.
    const std::size_t keep = (!buf_.empty() && buf_.back() == kStartCode0) ? 1 : 0;
    if (buf_.size() > keep) drop_front(buf_.size() - keep, true);
    return false;
  }
  if (start > 0) drop_front(start, true);
  if (buf_.size() < 4) return false;

  const std::uint8_t len = buf_[2];
  const std::uint8_t lcs = buf_[3];
  if (len == 0x00 && lcs == 0xFF) {
    ++counters_.acks;
    out.push_back(Frame{Frame::Kind::kAck, 0, {}});
    drop_front(4, false);  // the postamble, if any, is skipped as noise
    return true;
  }
  if (len == 0xFF && lcs == 0x00) {
    ++counters_.nacks;
    out.push_back(Frame{Frame::Kind::kNack, 0, {}});
    drop_front(4, false);
    return true;
  }

  std::size_t header = 4;
  std::size_t length = len;
  if (len == 0xFF && lcs == 0xFF) {
    if (buf_.size() < 7) return false;
    const std::uint8_t lenm = buf_[4];
    const std::uint8_t lenl = buf_[5];
    if (static_cast<std::uint8_t>(lenm + lenl + buf_[6]) != 0) {
      ++counters_.bad_length_checksum;
      drop_front(2, true);  // resynchronise just past this start code
      return true;
    }
    header = 7;
    length = (std::size_t{lenm} << 8) | lenl;
  } else if (static_cast<std::uint8_t>(len + lcs) != 0) {
    ++counters_.bad_length_checksum;
    drop_front(2, true);
    return true;
  }
  if (length == 0 || length > kFrameDataMax + 1) {
    ++counters_.oversized;
    drop_front(2, true);
    return true;
  }
  if (buf_.size() < header + length + 1) return false;  // TFI..PDn and DCS not all here yet

  std::uint8_t sum = 0;
  for (std::size_t k = header; k <= header + length; ++k)
    sum = static_cast<std::uint8_t>(sum + buf_[k]);
  if (sum != 0) {
    ++counters_.bad_data_checksum;
    drop_front(2, true);
    return true;
  }
  Frame f;
  f.kind = Frame::Kind::kData;
  f.tfi = buf_[header];
  f.data.assign(buf_.begin() + static_cast<std::ptrdiff_t>(header + 1),
                buf_.begin() + static_cast<std::ptrdiff_t>(header + length));
  ++counters_.frames;
  out.push_back(std::move(f));
  drop_front(header + length + 1, false);  // the postamble is skipped as noise next pass
  return true;
}

}  // namespace citycard::hil::pn532
