#include "citycard/devices/m1_card.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "citycard/protocol/check.h"

namespace citycard::devices {

namespace m1 = protocol::m1;
using m1::Block;

namespace {

std::uint32_t le32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
         std::uint32_t{p[3]} << 24;
}

}  // namespace

M1Card::M1Card(const m1::M1Image& image, const M1Profile& profile)
    : profile_(&profile), uid_(image.uid) {
  const auto blocks = m1::personalised_blocks(image);
  for (std::uint8_t n = 0; n < m1::kBlocks; ++n) {
    if (blocks[n] != blank(n)) *materialise(n) = blocks[n];
  }
}

M1Card::~M1Card() = default;
M1Card::M1Card(M1Card&&) noexcept = default;
M1Card& M1Card::operator=(M1Card&&) noexcept = default;

Block M1Card::blank(std::uint8_t n) const {
  if (n == 0) return m1::manufacturer_block(uid_);
  if (m1::is_trailer(n)) {
    return m1::trailer_block(m1::kTransportKey, m1::kTransportAccess, m1::kTransportKey);
  }
  return Block{};
}

const Block* M1Card::stored(std::uint8_t n) const {
  const std::uint8_t s = m1::sector_of(n);
  if ((materialised_ & (1u << s)) == 0) return nullptr;
  const int index = std::popcount(static_cast<unsigned>(materialised_ & ((1u << s) - 1)));
  return &sectors_[static_cast<std::size_t>(index)][n % m1::kBlocksPerSector];
}

Block* M1Card::stored(std::uint8_t n) {
  return const_cast<Block*>(static_cast<const M1Card*>(this)->stored(n));
}

Block* M1Card::materialise(std::uint8_t n) {
  if (Block* b = stored(n)) return b;
  const std::uint8_t s = m1::sector_of(n);
  const int count = std::popcount(static_cast<unsigned>(materialised_));
  const int index = std::popcount(static_cast<unsigned>(materialised_ & ((1u << s) - 1)));
  auto grown = std::make_unique<Sector[]>(static_cast<std::size_t>(count + 1));
  for (int i = 0, j = 0; i <= count; ++i) {
    if (i == index) {
      for (std::uint8_t k = 0; k < m1::kBlocksPerSector; ++k) {
        grown[static_cast<std::size_t>(i)][k] =
            blank(static_cast<std::uint8_t>(s * m1::kBlocksPerSector + k));
      }
    } else {
      grown[static_cast<std::size_t>(i)] = sectors_[static_cast<std::size_t>(j++)];
    }
  }
  sectors_ = std::move(grown);
  materialised_ = static_cast<std::uint16_t>(materialised_ | (1u << s));
  return stored(n);
}

Block M1Card::block(std::uint8_t n) const {
  CITYCARD_CHECK(n < m1::kBlocks, "block number of a 1K card");
  const Block* b = stored(n);
  return b ? *b : blank(n);
}

std::size_t M1Card::heap_bytes() const {
  return static_cast<std::size_t>(std::popcount(static_cast<unsigned>(materialised_))) *
         sizeof(Sector);
}

std::optional<m1::Access> M1Card::access(std::uint8_t sector) const {
  const Block t = block(m1::trailer_of(sector));
  return m1::decode_access(t.data() + 6);
}

bool M1Card::authenticated_for(std::uint8_t n) const {
  return auth_sector_ >= 0 && m1::sector_of(n) == static_cast<std::uint8_t>(auth_sector_);
}

LinkTiming M1Card::link_timing() const {
  return LinkTiming{LinkTiming::Interface::kMifare, profile_->air, {}};
}

void M1Card::reset() {
  powered_ = true;
  halted_ = false;
  power_cut_after_ = -1;
  auth_sector_ = -1;
  buffer_valid_ = false;
}

bool M1Card::arm_power_cut(std::uint32_t after_writes) {
  power_cut_after_ = static_cast<std::int32_t>(after_writes > 1 ? 1 : after_writes);
  return true;
}

Bytes M1Card::nak() {
  // A real card halts after a NAK; we drop the authentication (see the header).
  auth_sector_ = -1;
  buffer_valid_ = false;
  last_processing_us_ = static_cast<std::int32_t>(profile_->refused_us);
  return Bytes{m1::kNak};
}

Bytes M1Card::ack(std::int64_t processing_us) {
  last_processing_us_ = static_cast<std::int32_t>(processing_us);
  return Bytes{m1::kAck};
}

Bytes M1Card::process(ByteView c) {
  if (!powered_) return {};
  if (halted_) {
    if (power_cut_after_ >= 0) {  // silent either way; now also without power
      power_cut_after_ = -1;
      powered_ = false;
    }
    return {};
  }
  if (c.size() < 2 || c[1] >= m1::kBlocks) return nak();
  Bytes answer;
  switch (c[0]) {
    case m1::cmd::kAuthA:
    case m1::cmd::kAuthB:
      answer = authenticate(c);
      break;
    case m1::cmd::kRead:
      answer = read(c);
      break;
    case m1::cmd::kWrite:
      answer = write(c);
      break;
    case m1::cmd::kDecrement:
    case m1::cmd::kIncrement:
    case m1::cmd::kRestore:
      answer = value_op(c);
      break;
    case m1::cmd::kTransfer:
      answer = transfer(c);
      break;
    default:
      answer = nak();
      break;
  }
  if (!powered_) return {};
  if (power_cut_after_ >= 0) {
    // The command wrote no block, or finished its write: power fails right after it.
    power_cut_after_ = -1;
    powered_ = false;
    return {};
  }
  return answer;
}

Bytes M1Card::authenticate(ByteView c) {
  if (c.size() != 12) {
    halted_ = true;
    return {};
  }
  const std::uint8_t sector = m1::sector_of(c[1]);
  const auto type = c[0] == m1::cmd::kAuthA ? m1::KeyType::kA : m1::KeyType::kB;
  const Block t = block(m1::trailer_of(sector));
  const std::uint8_t* key = type == m1::KeyType::kA ? t.data() : t.data() + 10;
  if (std::memcmp(key, c.data() + 2, 6) != 0 || std::memcmp(uid_.data(), c.data() + 8, 4) != 0) {
    // The reader's reply fails the three-pass check: the card halts.
    halted_ = true;
    auth_sector_ = -1;
    buffer_valid_ = false;
    last_processing_us_ = static_cast<std::int32_t>(profile_->auth_us);
    return {};
  }
  auth_sector_ = static_cast<std::int8_t>(sector);
  auth_key_ = type;
  buffer_valid_ = false;
  return ack(profile_->auth_us);
}

Bytes M1Card::read(ByteView c) {
  const std::uint8_t n = c[1];
  if (c.size() != 2 || !authenticated_for(n)) return nak();
  const auto a = access(m1::sector_of(n));
  if (!a) return nak();
  const std::uint8_t trailer_code = a->code[3];
  Block out = block(n);
  if (m1::is_trailer(n)) {
    std::memset(out.data(), 0, 6);  // key A never reads back
    if (!m1::trailer_read_allowed(trailer_code, m1::TrailerField::kAccess, auth_key_)) {
      std::memset(out.data() + 6, 0, 4);
    }
    if (!m1::trailer_read_allowed(trailer_code, m1::TrailerField::kKeyB, auth_key_)) {
      std::memset(out.data() + 10, 0, 6);
    }
  } else if (!m1::data_allowed(a->code[n % 4], trailer_code, m1::DataOp::kRead, auth_key_)) {
    return nak();
  }
  last_processing_us_ = static_cast<std::int32_t>(profile_->read_us);
  return Bytes(out.begin(), out.end());
}

bool M1Card::store(std::uint8_t n, const Block& data) {
  Block* b = materialise(n);
  ++block_writes_;
  if (power_cut_after_ == 0) {
    // Torn: the EEPROM row was half programmed when power went.
    std::memcpy(b->data(), data.data(), 8);
    power_cut_after_ = -1;
    powered_ = false;
    return false;
  }
  *b = data;
  return true;
}

Bytes M1Card::write(ByteView c) {
  const std::uint8_t n = c[1];
  if (c.size() != 18 || !authenticated_for(n) || n == 0) return nak();
  const auto a = access(m1::sector_of(n));
  if (!a) return nak();
  const std::uint8_t trailer_code = a->code[3];
  Block data;
  std::memcpy(data.data(), c.data() + 2, 16);
  if (m1::is_trailer(n)) {
    // Each part the write would change must be writable with this key.
    const Block old = block(n);
    auto changes = [&](std::size_t off, std::size_t len) {
      return std::memcmp(old.data() + off, data.data() + off, len) != 0;
    };
    using F = m1::TrailerField;
    if ((changes(0, 6) && !m1::trailer_write_allowed(trailer_code, F::kKeyA, auth_key_)) ||
        (changes(6, 4) && !m1::trailer_write_allowed(trailer_code, F::kAccess, auth_key_)) ||
        (changes(10, 6) && !m1::trailer_write_allowed(trailer_code, F::kKeyB, auth_key_))) {
      return nak();
    }
  } else if (!m1::data_allowed(a->code[n % 4], trailer_code, m1::DataOp::kWrite, auth_key_)) {
    return nak();
  }
  if (!store(n, data)) return {};
  return ack(profile_->write_us);
}

Bytes M1Card::value_op(ByteView c) {
  const std::uint8_t n = c[1];
  if (c.size() != 6 || !authenticated_for(n) || m1::is_trailer(n) || n == 0) return nak();
  const auto a = access(m1::sector_of(n));
  if (!a) return nak();
  const auto op = c[0] == m1::cmd::kIncrement ? m1::DataOp::kIncrement : m1::DataOp::kDecrement;
  if (!m1::data_allowed(a->code[n % 4], a->code[3], op, auth_key_)) return nak();
  const std::optional<m1::Value> v = m1::decode_value(block(n));
  if (!v) return nak();
  const std::uint32_t operand = le32(c.data() + 2);
  auto value = static_cast<std::uint32_t>(v->value);
  if (c[0] == m1::cmd::kIncrement) value += operand;
  if (c[0] == m1::cmd::kDecrement) value -= operand;
  buffer_value_ = static_cast<std::int32_t>(value);
  buffer_addr_ = v->addr;
  buffer_valid_ = true;
  return ack(profile_->value_us);
}

Bytes M1Card::transfer(ByteView c) {
  const std::uint8_t n = c[1];
  if (c.size() != 2 || !authenticated_for(n) || !buffer_valid_ || m1::is_trailer(n) || n == 0) {
    return nak();
  }
  const auto a = access(m1::sector_of(n));
  if (!a || !m1::data_allowed(a->code[n % 4], a->code[3], m1::DataOp::kDecrement, auth_key_)) {
    return nak();
  }
  buffer_valid_ = false;
  if (!store(n, m1::value_block(buffer_value_, buffer_addr_))) return {};
  return ack(profile_->write_us);
}

}  // namespace citycard::devices
