// A MIFARE Classic 1K purse card (M1): 16 sectors of 4 blocks, keys A/B and access bits per
// sector trailer, value blocks, personalised by protocol::m1::M1Image.
//
// It speaks the MIFARE command bytes that a PN532 carries in InDataExchange (protocol/
// mifare.h; ../shared/docs/PN532.md) and answers at the card's level, with the convention of
// hil/field_card.h, so hil's software PN532 can hold it in its field unchanged:
//   60/61 blk key(6) uid(4)  authenticate the block's sector with key A / B -> ACK (0A);
//                            refused -> no answer, and the card halts until reset()
//   30 blk                   read -> the 16 bytes
//   A0 blk data(16)          write -> ACK
//   C0/C1/C2 blk v(4)        decrement / increment / restore into the transfer buffer -> ACK
//   B0 blk                   transfer the buffer to a block -> ACK
//   anything refused         NAK (04), and the authentication is dropped
// DirectM1Link (m1_link.h) turns these into what a terminal sees from its PN532: a status byte
// (00 ok, 14 authentication refused, 01 NAK or no answer), then the data.
//
// Behaviour (MF1S50 data sheet, with the simplifications named here):
// - No Crypto-1 cipher: authentication compares the key with the sector trailer's, and the
//   UID with the card's. One sector is authenticated at a time.
// - Every read, write and value operation checks the access conditions of the block for the
//   key that authenticated (protocol::m1::data_allowed / trailer_*_allowed). Key A reads back
//   as zeros; key B too where the trailer does not let it be read. A sector whose access bits
//   are inconsistent is unusable, as on a real card.
// - Value operations need a block in value-block format; INCREMENT/DECREMENT/RESTORE load the
//   transfer buffer (value and the source block's address byte), TRANSFER writes it to a block
//   of the authenticated sector with decrement rights.
// - Block 0 (manufacturer) is read-only.
// - A NAK drops the authentication (a real card halts after any NAK and needs re-selection;
//   we halt only after a refused AUTH, as hil's memory card does).
// - Writes are NOT atomic beyond one block: a power cut during a WRITE or TRANSFER leaves
//   the block torn (its first 8 bytes new, the last 8 old), which is why the purse keeps a
//   backup value block and two process-information blocks (m1_purse.h).
//
// Memory: the hot state is small and fixed (a test holds it under 256 bytes); sectors that
// differ from a blank transport sector live on the heap, 64 bytes each (a city purse card: the
// 6 purse sectors).
//
// Not thread-safe; a card is in one field at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "citycard/devices/card_profile.h"
#include "citycard/devices/timing.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/mifare.h"

namespace citycard::devices {

class M1Card {
 public:
  explicit M1Card(const protocol::m1::M1Image& image,
                  const M1Profile& profile = M1Profile::standard());
  ~M1Card();
  M1Card(M1Card&&) noexcept;
  M1Card& operator=(M1Card&&) noexcept;

  // One MIFARE command in, the card's answer out (see above). No answer: refused AUTH (the
  // card halted), or power lost (arm_power_cut); either lasts until reset().
  Bytes process(ByteView command);
  // Left the field, or powered again: authentication, halt and the transfer buffer are gone.
  void reset();
  // Power fails during the next command: a block it writes is torn (half written) when
  // `after_writes` is 0, or written completely when 1 or more; a command that writes no block
  // completes. Then the card is silent until reset(). Returns true.
  bool arm_power_cut(std::uint32_t after_writes);

  LinkTiming link_timing() const;
  std::int64_t last_processing_us() const { return last_processing_us_; }

  const protocol::m1::Uid4& uid() const { return uid_; }
  bool powered() const { return powered_; }
  bool halted() const { return halted_; }
  // A block as stored, trailers with their keys (for tests and inspection, not the air).
  protocol::m1::Block block(std::uint8_t n) const;
  std::size_t heap_bytes() const;
  std::uint64_t block_writes() const { return block_writes_; }

 private:
  using Sector = std::array<protocol::m1::Block, protocol::m1::kBlocksPerSector>;

  Bytes nak();
  Bytes ack(std::int64_t processing_us);
  Bytes authenticate(ByteView c);
  Bytes read(ByteView c);
  Bytes write(ByteView c);
  Bytes value_op(ByteView c);
  Bytes transfer(ByteView c);
  // Stores `data` into block `n`, torn when a power cut says so; false if power failed.
  bool store(std::uint8_t n, const protocol::m1::Block& data);
  protocol::m1::Block blank(std::uint8_t n) const;
  protocol::m1::Block* stored(std::uint8_t n);
  const protocol::m1::Block* stored(std::uint8_t n) const;
  protocol::m1::Block* materialise(std::uint8_t n);
  std::optional<protocol::m1::Access> access(std::uint8_t sector) const;
  bool authenticated_for(std::uint8_t block) const;

  const M1Profile* profile_;
  protocol::m1::Uid4 uid_;
  std::uint16_t materialised_ = 0;     // bit s: sector s is on the heap
  std::unique_ptr<Sector[]> sectors_;  // the materialised sectors, in sector order
  std::uint64_t block_writes_ = 0;

  // Volatile.
  std::int8_t auth_sector_ = -1;
  protocol::m1::KeyType auth_key_ = protocol::m1::KeyType::kA;
  bool buffer_valid_ = false;
  std::uint8_t buffer_addr_ = 0;
  std::int32_t buffer_value_ = 0;
  bool powered_ = true;
  bool halted_ = false;
  std::int32_t power_cut_after_ = -1;
  std::int32_t last_processing_us_ = 0;
};

}  // namespace citycard::devices
