// Framing of wire messages. A frame is
//   magic "CC" (2) | version (1) = 1 | reserved (1) = 0 | payload length (4, big-endian) | payload
// where the payload is a serialized citycard.wire.Envelope. The explicit length catches a
// truncated or padded frame that a protobuf parser alone would accept.
#pragma once

#include <cstddef>
#include <cstdint>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"
#include "citycard/protocol/purse.h"
#include "wire.pb.h"

namespace citycard::protocol::wire {

using citycard::wire::Envelope;

inline constexpr std::size_t kHeaderBytes = 8;
inline constexpr std::uint8_t kVersion = 1;
// Upper bound on a frame; a batch of 10,000 records is about 1 MiB.
inline constexpr std::size_t kMaxFrameBytes = 4u << 20;

Bytes encode(const Envelope& envelope);
// Rejects, with a message that says which: short header, bad magic, unknown version, a length
// over max_frame_bytes, a payload shorter or longer than the header says, a payload protobuf
// cannot parse, and an envelope with no body.
Result<Envelope> decode(ByteView frame, std::size_t max_frame_bytes = kMaxFrameBytes);

// The bytes a batch signature covers: terminal(6) batch_no(8) count(4) total(8) and every
// record's TAC in order, so a batch cannot be re-assembled from other batches' records.
Bytes batch_mac_input(const citycard::wire::UploadBatch& batch);

// Converters for the fixed-length byte fields; false when the length is wrong.
bool to_serial(const std::string& field, Serial8& out);
bool to_terminal(const std::string& field, TerminalId& out);
bool to_datetime(const std::string& field, DateTime7& out);
bool to_mac(const std::string& field, Mac4& out);
template <std::size_t N>
std::string field(const std::array<std::uint8_t, N>& a) {
  return std::string(reinterpret_cast<const char*>(a.data()), N);
}

}  // namespace citycard::protocol::wire
