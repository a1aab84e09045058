#include "citycard/devices/timing.h"

#include "citycard/protocol/check.h"
#include "citycard/protocol/mifare.h"

namespace citycard::devices::timing {
namespace {

std::int64_t us_to_cycles(std::int64_t us) {
  return (us * kCarrierHz + 999'999) / 1'000'000;
}

// A 4-bit ACK/NAK: SOF, 4 bits, EOF.
std::int64_t ack_cycles() {
  return (1 + 4 + 1) * kCyclesPerBit;
}

// Frames of one direction of an ISO-DEP exchange: INF split by the receiver's frame size,
// each block but the last acknowledged by an R(ACK) from the receiver.
std::int64_t chained_cycles(std::size_t inf_bytes, std::size_t frame_max, std::size_t overhead,
                            std::int64_t gap_cycles) {
  const std::size_t inf_max = frame_max > overhead ? frame_max - overhead : 1;
  std::size_t blocks = (inf_bytes + inf_max - 1) / inf_max;
  if (blocks == 0) blocks = 1;
  std::int64_t cycles = 0;
  std::size_t left = inf_bytes;
  for (std::size_t i = 0; i < blocks; ++i) {
    const std::size_t n = left < inf_max ? left : inf_max;
    left -= n;
    cycles += frame_cycles(n + overhead);
    if (i + 1 < blocks) {
      // R(ACK) back, with the frame delay before it and the turnaround after it.
      cycles += gap_cycles + frame_cycles(overhead);
    }
  }
  return cycles;
}

}  // namespace

std::int64_t cycles_to_us(std::int64_t cycles) {
  return (cycles * 1'000'000 + kCarrierHz - 1) / kCarrierHz;
}

std::int64_t frame_cycles(std::size_t bytes) {
  return static_cast<std::int64_t>(1 + 9 * bytes + 1) * kCyclesPerBit;
}

std::int64_t fwt_us(std::uint8_t fwi) {
  return cycles_to_us((256LL * 16) << fwi);
}

std::int64_t iso_dep_exchange_us(const Iso14443Picc& picc, const ReaderTiming& reader,
                                 std::size_t capdu_bytes, std::size_t rapdu_bytes,
                                 std::int64_t processing_us) {
  CITYCARD_CHECK(picc.fwi <= 14, "FWI is at most 14");
  const std::size_t overhead = 1 + (picc.cid ? 1 : 0) + 2;  // PCB, CID, CRC_A
  const std::int64_t turnaround = us_to_cycles(reader.turnaround_us);
  const std::int64_t gap = kFdtMinCycles + turnaround;
  std::int64_t cycles = chained_cycles(capdu_bytes, picc.fsc_bytes, overhead, gap);
  const std::int64_t busy = us_to_cycles(processing_us);
  cycles += busy > kFdtMinCycles ? busy : kFdtMinCycles;
  const std::int64_t fwt = (256LL * 16) << picc.fwi;
  if (busy > fwt) {
    // One S(WTX) request (PCB, WTXM, CRC) and its echo per FWT the card needs beyond the first.
    const std::int64_t rounds = (busy + fwt - 1) / fwt - 1;
    cycles += rounds * (2 * frame_cycles(overhead + 1) + kFdtMinCycles + turnaround);
  }
  cycles += chained_cycles(rapdu_bytes, reader.fsd_bytes, overhead, gap);
  cycles += turnaround;
  return cycles_to_us(cycles);
}

std::int64_t activation_us(const Iso14443Picc& picc, const ReaderTiming& reader, bool iso_dep) {
  CITYCARD_CHECK(picc.uid_bytes == 4 || picc.uid_bytes == 7, "UID of 4 or 7 bytes");
  const std::int64_t turnaround = us_to_cycles(reader.turnaround_us);
  std::int64_t cycles = us_to_cycles(picc.startup_us);
  cycles += (1 + 7 + 1) * kCyclesPerBit + kFdtShortCycles + frame_cycles(2) + turnaround;  // REQA
  const int levels = picc.uid_bytes == 4 ? 1 : 2;
  for (int level = 0; level < levels; ++level) {
    cycles += frame_cycles(2) + kFdtShortCycles + frame_cycles(5) + turnaround;  // ANTICOLLISION
    cycles += frame_cycles(9) + kFdtMinCycles + frame_cycles(3) + turnaround;    // SELECT / SAK
  }
  if (iso_dep) {
    cycles += frame_cycles(4) + kFdtMinCycles + frame_cycles(picc.ats_bytes + 2) + turnaround;
    if (picc.sfgi > 0) cycles += (256LL * 16) << picc.sfgi;
  }
  return cycles_to_us(cycles);
}

std::int64_t mifare_exchange_us(const ReaderTiming& reader, std::uint8_t command,
                                std::size_t answer_data_bytes, std::int64_t processing_us,
                                std::int64_t value_wait_us) {
  namespace cmd = protocol::m1::cmd;
  const std::int64_t turnaround = us_to_cycles(reader.turnaround_us);
  const std::int64_t busy = us_to_cycles(processing_us);
  const std::int64_t wait = busy > kFdtMinCycles ? busy : kFdtMinCycles;
  const std::int64_t header = frame_cycles(2 + 2);  // command, block, CRC_A
  switch (command) {
    case cmd::kAuthA:
    case cmd::kAuthB:
      // Nt (4, plain framing), then Nr+Ar (8) and At (4).
      return cycles_to_us(header + kFdtMinCycles + frame_cycles(4) + turnaround + frame_cycles(8) +
                          wait + frame_cycles(4) + turnaround);
    case cmd::kRead:
      return cycles_to_us(header + wait + frame_cycles(answer_data_bytes + 2) + turnaround);
    case cmd::kWrite:
      return cycles_to_us(header + kFdtMinCycles + ack_cycles() + turnaround +
                          frame_cycles(16 + 2) + wait + ack_cycles() + turnaround);
    case cmd::kDecrement:
    case cmd::kIncrement:
    case cmd::kRestore:
      // The card does not acknowledge the operand; the reader waits out a passive timeout.
      return cycles_to_us(header + kFdtMinCycles + ack_cycles() + turnaround + frame_cycles(4 + 2) +
                          wait + us_to_cycles(value_wait_us));
    case cmd::kTransfer:
      return cycles_to_us(header + wait + ack_cycles() + turnaround);
    default:
      return cycles_to_us(header + wait + ack_cycles() + turnaround);
  }
}

std::int64_t t0_exchange_us(const ContactTiming& contact, std::size_t data_in, std::size_t data_out,
                            std::int64_t processing_us) {
  CITYCARD_CHECK(contact.d > 0 && contact.clock_hz > 0, "a contact timing needs D and f");
  // A character: 12 etu; etu = F / (D f) seconds. In nanoseconds, exactly enough.
  const std::int64_t char_ns = 12LL * contact.f * 1'000'000'000LL /
                               (static_cast<std::int64_t>(contact.d) * contact.clock_hz);
  std::size_t chars = 5 + 2;              // header, status word
  if (data_in > 0) chars += 1 + data_in;  // procedure byte, data
  if (data_out > 0) {
    if (data_in > 0) chars += 5;  // case 4: 61xx, then GET RESPONSE's header
    chars += 1 + data_out;        // procedure byte, data
    if (data_in > 0) chars += 2;  // GET RESPONSE's own status word
  }
  const std::int64_t ns = static_cast<std::int64_t>(chars) * char_ns;
  return (ns + 999) / 1000 + processing_us + contact.turnaround_us;
}

}  // namespace citycard::devices::timing
