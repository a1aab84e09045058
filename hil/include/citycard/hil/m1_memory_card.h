// A plain MIFARE Classic 1K memory card at the command level (field_card.h's convention):
// 16 sectors of 4 blocks, keys A and B in each sector trailer, value blocks with their
// backup layout. It stands in the software PN532's field for M1 purse cards until the M1
// purse model of devices/ is plugged in through the same convention.
//
// Modelled: authentication per sector with key A or B (a refused AUTH halts the card: every
// command then goes unanswered until power-off), READ/WRITE of the authenticated sector, key A
// reading back as zeros, block 0 (manufacturer block) read-only, DECREMENT/INCREMENT/RESTORE
// into the transfer buffer and TRANSFER out of it, value-block format checks.
// Not modelled: Crypto1 (the PN532 hides it anyway), access bits (an authenticated key may do
// everything), 4K cards.
//
// Not thread-safe; in a field it is driven on the emulator's thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "citycard/protocol/bytes.h"

namespace citycard::hil {

class MifareClassic1k {
 public:
  static constexpr std::size_t kBlocks = 64;
  using Block = std::array<std::uint8_t, 16>;
  using Key = std::array<std::uint8_t, 6>;

  // A blank card: block 0 from the UID, every trailer with keys A = B = FFFFFFFFFFFF and the
  // transport access bits FF0780 69.
  explicit MifareClassic1k(const std::array<std::uint8_t, 4>& uid);

  Bytes process(ByteView command);
  void reset();  // power-off: authentication, halt and transfer buffer are lost

  // Direct access for personalisation and tests (no authentication).
  const Block& block(std::size_t n) const { return blocks_.at(n); }
  void set_block(std::size_t n, const Block& data) { blocks_.at(n) = data; }
  void set_keys(std::size_t sector, const Key& key_a, const Key& key_b);

  // Value block layout: value, ~value, value (little-endian int32), addr, ~addr, addr, ~addr.
  static Block value_block(std::int32_t value, std::uint8_t addr);
  static std::optional<std::int32_t> value_of(const Block& b);

 private:
  Bytes authenticate(ByteView c);
  Bytes read(std::uint8_t blk) const;
  Bytes write(std::uint8_t blk, ByteView data);
  Bytes value_operation(std::uint8_t op, std::uint8_t blk, ByteView operand);
  Bytes transfer(std::uint8_t blk);
  bool may_access(std::uint8_t blk) const;

  std::array<std::uint8_t, 4> uid_;
  std::array<Block, kBlocks> blocks_{};
  std::optional<std::size_t> authenticated_sector_;
  bool halted_ = false;
  struct TransferBuffer {
    std::int32_t value;
    std::uint8_t addr;
  };
  std::optional<TransferBuffer> transfer_buffer_;
};

}  // namespace citycard::hil
