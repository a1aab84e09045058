// The PN532 host-link frame format (PN532 user manual, section 6.2; PN532.md): what goes over
// the UART between libnfc and the chip, as encoder functions and a streaming decoder.
//
//   normal frame    00 00 FF LEN LCS TFI PD0..PDn DCS 00      LEN = 1 + n + 1 <= 255
//   extended frame  00 00 FF FF FF LENM LENL LCS TFI PD0..PDn DCS 00
//   ACK             00 00 FF 00 FF 00       (host -> chip: abort the running command)
//   NACK            00 00 FF FF 00 00       (host -> chip: send the last reply again)
//   error frame     00 00 FF 01 FF 7F 81 00 (chip -> host: syntax error)
//
// TFI is D4 host -> chip and D5 chip -> host; PD0 is the command code (the reply's is +1).
// LCS makes LEN + LCS = 0 and DCS makes TFI + PD0..PDn + DCS = 0 (mod 256).
//
// Thread-compatible: a FrameDecoder belongs to the one thread that reads the line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "citycard/protocol/bytes.h"

namespace citycard::hil::pn532 {

inline constexpr std::uint8_t kTfiHostToChip = 0xD4;
inline constexpr std::uint8_t kTfiChipToHost = 0xD5;
// PD0..PDn that fit a normal frame: LEN counts TFI too and is one byte.
inline constexpr std::size_t kNormalFrameDataMax = 254;
// The most PD0..PDn bytes either side sends: libnfc's PN53x_EXTENDED_FRAME__DATA_MAX_LEN.
inline constexpr std::size_t kFrameDataMax = 264;
// Silence after which a partly received frame is dropped (PN532.md: ~100 ms). A real chip
// has a similar inter-byte timeout; without it a fragment left by a client that died
// mid-frame would swallow the next client's first command.
inline constexpr std::int64_t kPartialFrameTimeoutUs = 100'000;

// A frame carrying `data` (PD0..PDn) behind `tfi`; extended when data is over
// kNormalFrameDataMax. data.size() must be in 1..kFrameDataMax.
Bytes encode_frame(std::uint8_t tfi, ByteView data);
const Bytes& ack_frame();
const Bytes& nack_frame();
const Bytes& error_frame();

struct Frame {
  enum class Kind : std::uint8_t { kData, kAck, kNack };
  Kind kind = Kind::kData;
  std::uint8_t tfi = 0;  // kData only
  Bytes data;            // PD0..PDn, kData only
};

struct DecoderCounters {
  std::uint64_t frames = 0;  // data frames decoded (any TFI)
  std::uint64_t acks = 0;
  std::uint64_t nacks = 0;
  std::uint64_t bad_length_checksum = 0;  // LCS wrong: resynchronised
  std::uint64_t bad_data_checksum = 0;    // DCS wrong: frame dropped, resynchronised
  std::uint64_t oversized = 0;            // LEN over kFrameDataMax + 1: resynchronised
  std::uint64_t partial_dropped = 0;      // silence mid-frame
  std::uint64_t skipped_bytes = 0;        // preamble, wake-up bytes, line noise, dropped bytes
};

// Turns a byte stream into frames. Bytes outside frames (the 00 preamble, the 55 55 00..
// wake-up sequence, postambles, noise) are skipped. On a bad checksum the decoder drops only
// the start code it was working on and scans on from the next byte, so a real frame that
// follows garbage is still found. Memory is bounded: at most kBufferBytesMax bytes are held.
class FrameDecoder {
 public:
  static constexpr std::size_t kBufferBytesMax = 1024;

  // Appends the frames completed by `bytes` (received at `now_us`) to `out`.
  void feed(ByteView bytes, std::int64_t now_us, std::vector<Frame>& out);
  // Drops a partial frame when no byte came for kPartialFrameTimeoutUs. True if it did.
  bool expire(std::int64_t now_us);
  // When expire() would drop the partial frame held now, if one is held.
  std::optional<std::int64_t> partial_deadline_us() const;
  void reset() { buf_.clear(); }

  const DecoderCounters& counters() const { return counters_; }

 private:
  // Decodes what buf_ holds; returns false when more bytes are needed.
  bool decode_one(std::vector<Frame>& out);
  void drop_front(std::size_t n, bool skipped);

  Bytes buf_;
  std::int64_t last_byte_us_ = 0;
  DecoderCounters counters_;
};

}  // namespace citycard::hil::pn532
