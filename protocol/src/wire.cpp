#include "citycard/protocol/wire.h"

#include <cstring>

namespace citycard::protocol::wire {

Bytes encode(const Envelope& envelope) {
  const std::size_t n = envelope.ByteSizeLong();
  Bytes out;
  out.reserve(kHeaderBytes + n);
  out.push_back('C');
  out.push_back('C');
  out.push_back(kVersion);
  out.push_back(0);
  put_u32be(out, static_cast<std::uint32_t>(n));
  out.resize(kHeaderBytes + n);
  if (n > 0 && !envelope.SerializeToArray(out.data() + kHeaderBytes, static_cast<int>(n))) {
    __builtin_trap();  // serializing a message we built cannot fail
  }
  return out;
}

Result<Envelope> decode(ByteView frame, std::size_t max_frame_bytes) {
  using R = Result<Envelope>;
  if (frame.size() < kHeaderBytes) {
    return R(Errc::kMalformed, "truncated frame: " + std::to_string(frame.size()) +
                                   " bytes, the header alone is 8");
  }
  if (frame[0] != 'C' || frame[1] != 'C') return R(Errc::kMalformed, "bad frame magic");
  if (frame[2] != kVersion) {
    return R(Errc::kMalformed, "unsupported wire version " + std::to_string(frame[2]) +
                                   " (this build speaks " + std::to_string(kVersion) + ")");
  }
  const std::size_t len = get_u32be(frame, 4);
  if (len + kHeaderBytes > max_frame_bytes) {
    return R(Errc::kTooLarge, "frame of " + std::to_string(len + kHeaderBytes) +
                                  " bytes is over the limit of " +
                                  std::to_string(max_frame_bytes));
  }
  if (frame.size() - kHeaderBytes != len) {
    return R(Errc::kMalformed, std::string(frame.size() - kHeaderBytes < len ? "truncated"
                                                                              : "oversized") +
                                   " frame: header says " + std::to_string(len) +
                                   " payload bytes, " +
                                   std::to_string(frame.size() - kHeaderBytes) + " follow");
  }
  Envelope env;
  if (!env.ParseFromArray(frame.data() + kHeaderBytes, static_cast<int>(len))) {
    return R(Errc::kMalformed, "payload is not a valid wire envelope");
  }
  if (env.body_case() == Envelope::BODY_NOT_SET) {
    return R(Errc::kMalformed, "envelope has no message body (unknown type from a newer peer?)");
  }
  return env;
}

Bytes batch_mac_input(const citycard::wire::UploadBatch& batch) {
  Bytes d;
  d.reserve(26 + 4 * static_cast<std::size_t>(batch.records_size()));
  const std::string& t = batch.terminal_id();
  d.insert(d.end(), t.begin(), t.end());
  put_u32be(d, static_cast<std::uint32_t>(batch.batch_no() >> 32));
  put_u32be(d, static_cast<std::uint32_t>(batch.batch_no()));
  put_u32be(d, batch.record_count());
  const auto total = static_cast<std::uint64_t>(batch.total_amount_fen());
  put_u32be(d, static_cast<std::uint32_t>(total >> 32));
  put_u32be(d, static_cast<std::uint32_t>(total));
  for (const auto& r : batch.records()) d.insert(d.end(), r.tac().begin(), r.tac().end());
  return d;
}

namespace {
template <std::size_t N>
bool copy_fixed(const std::string& f, std::array<std::uint8_t, N>& out) {
  if (f.size() != N) return false;
  std::memcpy(out.data(), f.data(), N);
  return true;
}
}  // namespace

bool to_serial(const std::string& f, Serial8& out) { return copy_fixed(f, out); }
bool to_terminal(const std::string& f, TerminalId& out) { return copy_fixed(f, out); }
bool to_datetime(const std::string& f, DateTime7& out) { return copy_fixed(f, out); }
bool to_mac(const std::string& f, Mac4& out) { return copy_fixed(f, out); }

}  // namespace citycard::protocol::wire
