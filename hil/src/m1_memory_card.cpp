#include "citycard/hil/m1_memory_card.h"

#include <algorithm>
#include <cstring>

#include "citycard/hil/field_card.h"

namespace citycard::hil {

namespace {

constexpr std::uint8_t kAuthA = 0x60;
constexpr std::uint8_t kAuthB = 0x61;
constexpr std::uint8_t kRead = 0x30;
constexpr std::uint8_t kWrite = 0xA0;
constexpr std::uint8_t kDecrement = 0xC0;
constexpr std::uint8_t kIncrement = 0xC1;
constexpr std::uint8_t kRestore = 0xC2;
constexpr std::uint8_t kTransfer = 0xB0;
constexpr std::uint8_t kNak = 0x04;  // "not allowed" NAK nibble

std::size_t sector_of(std::size_t blk) {
  return blk / 4;
}
std::size_t trailer_of(std::size_t sector) {
  return sector * 4 + 3;
}
bool is_trailer(std::size_t blk) {
  return blk % 4 == 3;
}

Bytes ack() {
  return Bytes{kMifareAck};
}
Bytes nak() {
  return Bytes{kNak};
}

}  // namespace

MifareClassic1k::MifareClassic1k(const std::array<std::uint8_t, 4>& uid) : uid_(uid) {
  Block b0{};
  std::copy(uid.begin(), uid.end(), b0.begin());
  b0[4] = static_cast<std::uint8_t>(uid[0] ^ uid[1] ^ uid[2] ^ uid[3]);  // BCC
  b0[5] = kSakMifareClassic1k;
  b0[6] = 0x04;  // ATQA, little-endian as stored on the card
  b0[7] = 0x00;
  blocks_[0] = b0;
  const Key transport{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
  for (std::size_t s = 0; s < kBlocks / 4; ++s) set_keys(s, transport, transport);
}

void MifareClassic1k::set_keys(std::size_t sector, const Key& key_a, const Key& key_b) {
  Block& t = blocks_.at(trailer_of(sector));
  std::copy(key_a.begin(), key_a.end(), t.begin());
  t[6] = 0xFF;  // transport access conditions
  t[7] = 0x07;
  t[8] = 0x80;
  t[9] = 0x69;
  std::copy(key_b.begin(), key_b.end(), t.begin() + 10);
}

void MifareClassic1k::reset() {
  authenticated_sector_.reset();
  halted_ = false;
  transfer_buffer_.reset();
}

MifareClassic1k::Block MifareClassic1k::value_block(std::int32_t value, std::uint8_t addr) {
  Block b{};
  const auto v = static_cast<std::uint32_t>(value);
  for (std::size_t i = 0; i < 4; ++i) {
    const auto byte = static_cast<std::uint8_t>(v >> (8 * i));
    b[i] = byte;
    b[4 + i] = static_cast<std::uint8_t>(~byte);
    b[8 + i] = byte;
  }
  b[12] = addr;
  b[13] = static_cast<std::uint8_t>(~addr);
  b[14] = addr;
  b[15] = static_cast<std::uint8_t>(~addr);
  return b;
}

std::optional<std::int32_t> MifareClassic1k::value_of(const Block& b) {
  for (std::size_t i = 0; i < 4; ++i) {
    if (b[i] != b[8 + i] || b[i] != static_cast<std::uint8_t>(~b[4 + i])) return std::nullopt;
  }
  if (b[12] != b[14] || b[13] != b[15] || b[12] != static_cast<std::uint8_t>(~b[13])) {
    return std::nullopt;
  }
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v |= std::uint32_t{b[i]} << (8 * i);
  return static_cast<std::int32_t>(v);
}

bool MifareClassic1k::may_access(std::uint8_t blk) const {
  return blk < kBlocks && authenticated_sector_ == sector_of(blk);
}

Bytes MifareClassic1k::process(ByteView c) {
  // A halted card (after a refused AUTH) stays silent until it is powered off.
  if (halted_ || c.empty()) return {};
  const std::uint8_t op = c[0];
  if (op == kAuthA || op == kAuthB) return authenticate(c);
  if (c.size() < 2) return nak();
  const std::uint8_t blk = c[1];
  switch (op) {
    case kRead:
      return c.size() == 2 ? read(blk) : nak();
    case kWrite:
      return c.size() == 18 ? write(blk, c.subspan(2)) : nak();
    case kDecrement:
    case kIncrement:
    case kRestore:
      return c.size() == 6 ? value_operation(op, blk, c.subspan(2)) : nak();
    case kTransfer:
      return c.size() == 2 ? transfer(blk) : nak();
    default:
      return nak();
  }
}

Bytes MifareClassic1k::authenticate(ByteView c) {
  // 60/61 blk key(6) uid(4): the PN532 runs the three-pass handshake with these.
  if (c.size() != 12 || c[1] >= kBlocks || !std::equal(uid_.begin(), uid_.end(), c.begin() + 8)) {
    halted_ = true;
    authenticated_sector_.reset();
    return {};
  }
  const std::size_t sector = sector_of(c[1]);
  const Block& t = blocks_[trailer_of(sector)];
  const std::size_t key_offset = c[0] == kAuthA ? 0 : 10;
  if (!std::equal(c.begin() + 2, c.begin() + 8,
                  t.begin() + static_cast<std::ptrdiff_t>(key_offset))) {
    halted_ = true;
    authenticated_sector_.reset();
    return {};
  }
  authenticated_sector_ = sector;
  return ack();
}

Bytes MifareClassic1k::read(std::uint8_t blk) const {
  if (!may_access(blk)) return nak();
  Block b = blocks_[blk];
  if (is_trailer(blk)) std::fill(b.begin(), b.begin() + 6, 0x00);  // key A never reads back
  return Bytes(b.begin(), b.end());
}

Bytes MifareClassic1k::write(std::uint8_t blk, ByteView data) {
  if (!may_access(blk) || blk == 0) return nak();
  std::copy(data.begin(), data.end(), blocks_[blk].begin());
  return ack();
}

Bytes MifareClassic1k::value_operation(std::uint8_t op, std::uint8_t blk, ByteView operand) {
  if (!may_access(blk) || is_trailer(blk) || blk == 0) return nak();
  const std::optional<std::int32_t> value = value_of(blocks_[blk]);
  if (!value) return nak();  // not a value block
  std::uint32_t delta = 0;
  for (std::size_t i = 0; i < 4; ++i) delta |= std::uint32_t{operand[i]} << (8 * i);
  // Value arithmetic wraps like the card's 32-bit register; the purse layer guards ranges.
  const auto v = static_cast<std::uint32_t>(*value);
  std::uint32_t result = v;
  if (op == kDecrement) result = v - delta;
  if (op == kIncrement) result = v + delta;
  // The address byte travels with the value, so RESTORE+TRANSFER makes an exact backup copy.
  transfer_buffer_ = TransferBuffer{static_cast<std::int32_t>(result), blocks_[blk][12]};
  return ack();
}

Bytes MifareClassic1k::transfer(std::uint8_t blk) {
  if (!may_access(blk) || is_trailer(blk) || blk == 0 || !transfer_buffer_) return nak();
  blocks_[blk] = value_block(transfer_buffer_->value, transfer_buffer_->addr);
  transfer_buffer_.reset();
  return ack();
}

}  // namespace citycard::hil
