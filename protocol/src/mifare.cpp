#include "citycard/protocol/mifare.h"

#include <cstring>

namespace citycard::protocol::m1 {
namespace {

void put_le32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint32_t get_le32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
         std::uint32_t{p[3]} << 24;
}

std::uint8_t xor_of(const Block& b, std::size_t n) {
  std::uint8_t x = 0;
  for (std::size_t i = 0; i < n; ++i) x ^= b[i];
  return x;
}

// Who may do what: bit 0 key A, bit 1 key B (MF1S50 data sheet, tables 7 and 8).
constexpr std::uint8_t kNever = 0, kA = 1, kB = 2, kAB = 3;
// Data blocks, per code: read, write, increment, decrement/transfer/restore.
constexpr std::uint8_t kDataTable[8][4] = {
    /*000*/ {kAB, kAB, kAB, kAB},
    /*001*/ {kAB, kNever, kNever, kAB},
    /*010*/ {kAB, kNever, kNever, kNever},
    /*011*/ {kB, kB, kNever, kNever},
    /*100*/ {kAB, kB, kNever, kNever},
    /*101*/ {kB, kNever, kNever, kNever},
    /*110*/ {kAB, kB, kB, kAB},
    /*111*/ {kNever, kNever, kNever, kNever},
};
// Trailer, per code: read key A, write key A, read access, write access, read key B, write
// key B. Key A is never readable.
constexpr std::uint8_t kTrailerTable[8][6] = {
    /*000*/ {kNever, kA, kA, kNever, kA, kA},
    /*001*/ {kNever, kA, kA, kA, kA, kA},
    /*010*/ {kNever, kNever, kA, kNever, kA, kNever},
    /*011*/ {kNever, kB, kAB, kB, kNever, kB},
    /*100*/ {kNever, kB, kAB, kNever, kNever, kB},
    /*101*/ {kNever, kNever, kAB, kB, kNever, kNever},
    /*110*/ {kNever, kNever, kAB, kNever, kNever, kNever},
    /*111*/ {kNever, kNever, kAB, kNever, kNever, kNever},
};

bool permits(std::uint8_t who, KeyType key) {
  return (who & (key == KeyType::kA ? kA : kB)) != 0;
}

}  // namespace

std::array<std::uint8_t, 8> card_number_bcd(const std::string& digits) {
  std::array<std::uint8_t, 8> out;
  out.fill(0xFF);
  for (std::size_t i = 0; i < 16 && i < digits.size(); ++i) {
    const auto d = static_cast<std::uint8_t>(digits[i] - '0');
    if (i % 2 == 0) {
      out[i / 2] = static_cast<std::uint8_t>((d << 4) | 0x0F);
    } else {
      out[i / 2] = static_cast<std::uint8_t>((out[i / 2] & 0xF0) | d);
    }
  }
  return out;
}

Block value_block(std::int32_t value, std::uint8_t addr) {
  Block b{};
  const auto v = static_cast<std::uint32_t>(value);
  put_le32(b.data(), v);
  put_le32(b.data() + 4, ~v);
  put_le32(b.data() + 8, v);
  b[12] = addr;
  b[13] = static_cast<std::uint8_t>(~addr);
  b[14] = addr;
  b[15] = static_cast<std::uint8_t>(~addr);
  return b;
}

std::optional<Value> decode_value(const Block& b) {
  const std::uint32_t v = get_le32(b.data());
  if (get_le32(b.data() + 4) != ~v || get_le32(b.data() + 8) != v) return std::nullopt;
  if (b[13] != static_cast<std::uint8_t>(~b[12]) || b[14] != b[12] || b[15] != b[13]) {
    return std::nullopt;
  }
  return Value{static_cast<std::int32_t>(v), b[12]};
}

std::array<std::uint8_t, 3> encode_access(const Access& a) {
  std::uint8_t c1 = 0, c2 = 0, c3 = 0;  // bit i = that bit of block i's code
  for (int i = 0; i < 4; ++i) {
    c1 |= static_cast<std::uint8_t>(((a.code[i] >> 2) & 1) << i);
    c2 |= static_cast<std::uint8_t>(((a.code[i] >> 1) & 1) << i);
    c3 |= static_cast<std::uint8_t>((a.code[i] & 1) << i);
  }
  return {static_cast<std::uint8_t>(((~c2 & 0x0F) << 4) | (~c1 & 0x0F)),
          static_cast<std::uint8_t>((c1 << 4) | (~c3 & 0x0F)),
          static_cast<std::uint8_t>((c3 << 4) | c2)};
}

std::optional<Access> decode_access(const std::uint8_t* b) {
  const std::uint8_t c1 = b[1] >> 4, c2 = b[2] & 0x0F, c3 = b[2] >> 4;
  const std::uint8_t nc1 = b[0] & 0x0F, nc2 = b[0] >> 4, nc3 = b[1] & 0x0F;
  if ((c1 ^ nc1) != 0x0F || (c2 ^ nc2) != 0x0F || (c3 ^ nc3) != 0x0F) return std::nullopt;
  Access a;
  for (int i = 0; i < 4; ++i) {
    a.code[i] = static_cast<std::uint8_t>((((c1 >> i) & 1) << 2) | (((c2 >> i) & 1) << 1) |
                                          ((c3 >> i) & 1));
  }
  return a;
}

bool key_b_readable(std::uint8_t trailer_code) {
  return kTrailerTable[trailer_code & 7][4] != kNever;
}

bool data_allowed(std::uint8_t data_code, std::uint8_t trailer_code, DataOp op, KeyType key) {
  if (key == KeyType::kB && key_b_readable(trailer_code)) return false;
  return permits(kDataTable[data_code & 7][static_cast<int>(op)], key);
}

bool trailer_read_allowed(std::uint8_t trailer_code, TrailerField field, KeyType key) {
  if (key == KeyType::kB && key_b_readable(trailer_code)) return false;
  return permits(kTrailerTable[trailer_code & 7][2 * static_cast<int>(field)], key);
}

bool trailer_write_allowed(std::uint8_t trailer_code, TrailerField field, KeyType key) {
  if (key == KeyType::kB && key_b_readable(trailer_code)) return false;
  return permits(kTrailerTable[trailer_code & 7][2 * static_cast<int>(field) + 1], key);
}

Block trailer_block(const Key6& key_a, const Access& access, const Key6& key_b,
                    std::uint8_t user_byte) {
  Block b{};
  std::memcpy(b.data(), key_a.data(), 6);
  const auto bits = encode_access(access);
  std::memcpy(b.data() + 6, bits.data(), 3);
  b[9] = user_byte;
  std::memcpy(b.data() + 10, key_b.data(), 6);
  return b;
}

Block manufacturer_block(const Uid4& uid) {
  Block b{};
  std::memcpy(b.data(), uid.data(), 4);
  b[4] = static_cast<std::uint8_t>(uid[0] ^ uid[1] ^ uid[2] ^ uid[3]);
  b[5] = 0x08;  // SAK of a MIFARE Classic 1K
  b[6] = 0x04;  // ATQA, least significant byte first
  b[7] = 0x00;
  return b;
}

Key6 sector_key(const crypto::Key16& m1_master, const Uid4& uid, std::uint8_t sector,
                KeyType type) {
  const crypto::Block8 in{uid[0], uid[1],
                          uid[2], uid[3],
                          sector, type == KeyType::kA ? std::uint8_t{0x0A} : std::uint8_t{0x0B},
                          0x00,   0x00};
  const crypto::Block8 out = crypto::tdes_encrypt(m1_master, in);
  Key6 k;
  std::memcpy(k.data(), out.data(), 6);
  return k;
}

std::array<Block, 2> IssuerInfo::encode() const {
  std::array<Block, 2> out{};
  std::memcpy(out[0].data(), card_number_bcd.data(), 8);
  out[0][8] = static_cast<std::uint8_t>(card_type);
  out[0][9] = city[0];
  out[0][10] = city[1];
  std::memcpy(out[1].data(), valid_from.data(), 4);
  std::memcpy(out[1].data() + 4, valid_to.data(), 4);
  return out;
}

IssuerInfo IssuerInfo::decode(const Block& first, const Block& second) {
  IssuerInfo i;
  std::memcpy(i.card_number_bcd.data(), first.data(), 8);
  i.card_type = static_cast<CardType>(first[8]);
  i.city = {first[9], first[10]};
  std::memcpy(i.valid_from.data(), second.data(), 4);
  std::memcpy(i.valid_to.data(), second.data() + 4, 4);
  return i;
}

Block ProcessInfo::encode() const {
  Block b{};
  b[0] = state;
  b[1] = static_cast<std::uint8_t>(counter >> 8);
  b[2] = static_cast<std::uint8_t>(counter);
  b[3] = slot;
  for (int i = 0; i < 4; ++i) {
    b[4 + i] = static_cast<std::uint8_t>(balance_before_fen >> (24 - 8 * i));
    b[8 + i] = static_cast<std::uint8_t>(amount_fen >> (24 - 8 * i));
  }
  b[12] = type;
  b[13] = static_cast<std::uint8_t>(terminal_seq_low >> 8);
  b[14] = static_cast<std::uint8_t>(terminal_seq_low);
  b[15] = xor_of(b, 15);
  return b;
}

std::optional<ProcessInfo> ProcessInfo::decode(const Block& b) {
  if (xor_of(b, 15) != b[15]) return std::nullopt;
  if (b[0] != kDone && b[0] != kInProgress) return std::nullopt;
  ProcessInfo p;
  p.state = b[0];
  p.counter = get_u16be(b, 1);
  p.slot = b[3];
  p.balance_before_fen = get_u32be(b, 4);
  p.amount_fen = get_u32be(b, 8);
  p.type = b[12];
  p.terminal_seq_low = get_u16be(b, 13);
  return p;
}

Block Record::encode() const {
  Block b{};
  b[0] = static_cast<std::uint8_t>(counter >> 8);
  b[1] = static_cast<std::uint8_t>(counter);
  b[2] = type;
  for (int i = 0; i < 3; ++i) {
    b[3 + i] = static_cast<std::uint8_t>(amount_fen >> (16 - 8 * i));
    b[6 + i] = static_cast<std::uint8_t>(balance_after_fen >> (16 - 8 * i));
  }
  for (int i = 0; i < 4; ++i) b[9 + i] = static_cast<std::uint8_t>(epoch2000_s >> (24 - 8 * i));
  b[13] = static_cast<std::uint8_t>(terminal_low >> 8);
  b[14] = static_cast<std::uint8_t>(terminal_low);
  b[15] = xor_of(b, 15);
  return b;
}

std::optional<Record> Record::decode(const Block& b) {
  if (xor_of(b, 15) != b[15]) return std::nullopt;
  Record r;
  r.counter = get_u16be(b, 0);
  r.type = b[2];
  r.amount_fen = get_u24be(b, 3);
  r.balance_after_fen = get_u24be(b, 6);
  r.epoch2000_s = get_u32be(b, 9);
  r.terminal_low = get_u16be(b, 13);
  return r;
}

M1Image m1_image(const Uid4& uid, std::uint32_t balance_fen, const IssuerInfo& issuer,
                 const crypto::Key16& m1_master) {
  M1Image image;
  image.uid = uid;
  image.balance_fen = balance_fen;
  image.issuer = issuer;
  image.key_a.fill(kTransportKey);
  image.key_b.fill(kTransportKey);
  for (std::uint8_t s = 1; s <= 6; ++s) {
    image.key_a[s] = sector_key(m1_master, uid, s, KeyType::kA);
    image.key_b[s] = sector_key(m1_master, uid, s, KeyType::kB);
  }
  return image;
}

std::array<Block, kBlocks> personalised_blocks(const M1Image& image, const PurseLayout& layout) {
  std::array<Block, kBlocks> blocks{};
  blocks[0] = manufacturer_block(image.uid);
  std::array<Access, kSectors> access;
  access.fill(kTransportAccess);
  access[sector_of(layout.issuer_block)] = kIssuerSectorAccess;
  access[sector_of(layout.purse_block)] = kPurseSectorAccess;
  for (std::uint8_t b : layout.record_blocks) access[sector_of(b)] = kRecordSectorAccess;
  access[sector_of(layout.info_block)] = kRecordSectorAccess;
  for (std::uint8_t s = 0; s < kSectors; ++s) {
    blocks[trailer_of(s)] = trailer_block(image.key_a[s], access[s], image.key_b[s]);
  }
  const auto issuer = image.issuer.encode();
  blocks[layout.issuer_block] = issuer[0];
  blocks[layout.issuer_block + 1u] = issuer[1];
  const auto balance = static_cast<std::int32_t>(image.balance_fen);
  // The backup carries the purse block's address, as RESTORE+TRANSFER leaves it.
  blocks[layout.purse_block] = value_block(balance, layout.purse_block);
  blocks[layout.purse_backup_block] = value_block(balance, layout.purse_block);
  ProcessInfo info;
  info.state = ProcessInfo::kDone;
  info.counter = 0;
  info.slot = static_cast<std::uint8_t>(layout.record_blocks.size() - 1);  // next slot is 0
  info.balance_before_fen = image.balance_fen;
  blocks[layout.info_block] = info.encode();
  blocks[layout.info_backup_block] = info.encode();
  return blocks;
}

}  // namespace citycard::protocol::m1
