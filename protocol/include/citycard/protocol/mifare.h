// MIFARE Classic 1K facts shared by the M1 card model, the terminals that drive it and (later)
// the libnfc adapter and the clearing centre: command bytes at the PN532 InDataExchange level
// (../shared/docs/PN532.md), value blocks, access conditions, sector trailers, and the layout
// of an M1 city purse with its process-information pair (STANDARDS.md, "Tearing").
//
// Confirmed by NXP's MF1S50 data sheet: block/sector geometry, the value-block format, the
// access-condition bits and tables, the command bytes. OURS (no public source pins them for
// the Chinese city M1 purse, so each is named and kept here): the purse layout (which blocks),
// the 16-byte process-information and cyclic-record layouts beyond "byte 15 an XOR check",
// the sector-key derivation, and the PN532 status byte that stands for a card's NAK.
//
// Two levels of answer (the same as hil/field_card.h's):
// - the card's: AUTH answers ACK or nothing (refused; the card halts), READ the 16 bytes,
//   WRITE/DECREMENT/INCREMENT/RESTORE/TRANSFER the 4-bit ACK (0A); anything else is a NAK;
// - the reader's (PN532 InDataExchange, what a terminal sees): a status byte, then the data.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/crypto.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/purse.h"

namespace citycard::protocol::m1 {

inline constexpr std::size_t kSectors = 16;
inline constexpr std::size_t kBlocksPerSector = 4;
inline constexpr std::size_t kBlocks = kSectors * kBlocksPerSector;
inline constexpr std::size_t kBlockBytes = 16;

using Block = std::array<std::uint8_t, kBlockBytes>;
using Key6 = std::array<std::uint8_t, 6>;
using Uid4 = std::array<std::uint8_t, 4>;

constexpr std::uint8_t sector_of(std::uint8_t block) {
  return block / kBlocksPerSector;
}
constexpr std::uint8_t trailer_of(std::uint8_t sector) {
  return static_cast<std::uint8_t>(sector * kBlocksPerSector + 3);
}
constexpr bool is_trailer(std::uint8_t block) {
  return block % kBlocksPerSector == 3;
}

// MIFARE command bytes as InDataExchange carries them. Auth: 60/61 block key(6) uid(4);
// read: 30 block; write: A0 block data(16); decrement/increment/restore: C0/C1/C2 block
// operand(4, little-endian; restore's operand is ignored); transfer: B0 block.
namespace cmd {
inline constexpr std::uint8_t kAuthA = 0x60;
inline constexpr std::uint8_t kAuthB = 0x61;
inline constexpr std::uint8_t kRead = 0x30;
inline constexpr std::uint8_t kWrite = 0xA0;
inline constexpr std::uint8_t kDecrement = 0xC0;
inline constexpr std::uint8_t kIncrement = 0xC1;
inline constexpr std::uint8_t kRestore = 0xC2;
inline constexpr std::uint8_t kTransfer = 0xB0;
}  // namespace cmd

// The card's 4-bit acknowledgements, as one byte.
inline constexpr std::uint8_t kAck = 0x0A;
inline constexpr std::uint8_t kNak = 0x04;  // "invalid operation"; 0x00/0x01/0x05 also NAK

// The first byte of every reader-level answer: the PN532's status (UM0701-02, error codes).
namespace status {
inline constexpr std::uint8_t kOk = 0x00;
// The card did not answer as expected. OUR reading (shared with hil's software PN532): a NAK
// and silence are both reported so; the PN532 user manual has no separate code for a NAK.
inline constexpr std::uint8_t kTimeout = 0x01;
inline constexpr std::uint8_t kMifareError = 0x14;  // MIFARE authentication refused
}  // namespace status

enum class KeyType : std::uint8_t { kA = 0, kB = 1 };

// ---- Value blocks: value, NOT value, value, addr, NOT addr, addr, NOT addr -------------
// Values are signed 32-bit little-endian, as the card's arithmetic sees them.
Block value_block(std::int32_t value, std::uint8_t addr);
struct Value {
  std::int32_t value = 0;
  std::uint8_t addr = 0;
};
// nullopt unless the block has the redundant value-block format.
std::optional<Value> decode_value(const Block& block);

// ---- Access conditions ------------------------------------------------------------------
// One 3-bit code C1C2C3 (as c1<<2 | c2<<1 | c3) per block of a sector; [3] is the trailer.
struct Access {
  std::array<std::uint8_t, 4> code{};
  bool operator==(const Access&) const = default;
};
// The transport configuration: data blocks 000, trailer 001 (bytes FF 07 80).
inline constexpr Access kTransportAccess{{0, 0, 0, 1}};
// Trailer bytes 6..8 for `access`; decode_access is nullopt when the bits and their
// complements disagree (a sector written so is unusable, as on a real card).
std::array<std::uint8_t, 3> encode_access(const Access& access);
std::optional<Access> decode_access(const std::uint8_t* bytes6_8);

enum class DataOp : std::uint8_t {
  kRead,
  kWrite,
  kIncrement,
  kDecrement
};  // dec = also
    // transfer, restore
enum class TrailerField : std::uint8_t { kKeyA, kAccess, kKeyB };
// Key B may not authenticate data access when the trailer lets it be read (data sheet).
bool key_b_readable(std::uint8_t trailer_code);
bool data_allowed(std::uint8_t data_code, std::uint8_t trailer_code, DataOp op, KeyType key);
bool trailer_read_allowed(std::uint8_t trailer_code, TrailerField field, KeyType key);
bool trailer_write_allowed(std::uint8_t trailer_code, TrailerField field, KeyType key);

Block trailer_block(const Key6& key_a, const Access& access, const Key6& key_b,
                    std::uint8_t user_byte = 0x69);
inline constexpr Key6 kTransportKey{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

// Block 0 of a card with a 4-byte UID: UID, BCC (XOR of the UID), SAK 08, ATQA 00 04, and
// manufacturer bytes.
Block manufacturer_block(const Uid4& uid);

// Sector key derivation, OUR scheme (real systems use proprietary or SAM-held ones):
// the first 6 bytes of 3DES(M1 master, uid(4) | sector | 0A or 0B | 00 00).
Key6 sector_key(const crypto::Key16& m1_master, const Uid4& uid, std::uint8_t sector, KeyType type);

// ---- The city purse on an M1 card (OUR layout) -------------------------------------------
struct PurseLayout {
  std::uint8_t issuer_block = 4;        // IssuerInfo, blocks 4-5 (sector 1)
  std::uint8_t purse_block = 8;         // value block (sector 2)
  std::uint8_t purse_backup_block = 9;  // its backup, same sector (RESTORE+TRANSFER)
  std::array<std::uint8_t, 9> record_blocks{12, 13, 14, 16, 17, 18, 20, 21, 22};  // cyclic
  std::uint8_t info_block = 24;  // process information (sector 6)
  std::uint8_t info_backup_block = 25;
};
inline constexpr PurseLayout kPurseLayout{};
// Access codes of the purse sectors. Key A is the terminals' debit key, key B the issuer's
// and loading key. Purse blocks: read A|B, write B, increment B, decrement/transfer/restore
// A|B (110). Records and process information: read/write A|B (000). Issuer blocks: read A|B,
// write B (100). Trailers: keys and access written with B only, key B not readable (011).
inline constexpr Access kIssuerSectorAccess{{4, 4, 4, 3}};
inline constexpr Access kPurseSectorAccess{{6, 6, 4, 3}};
inline constexpr Access kRecordSectorAccess{{0, 0, 0, 3}};
// The largest balance a purse takes: the record stores balances in 3 bytes.
inline constexpr std::uint32_t kBalanceMaxFen = 0xFFFFFF;

// Up to 16 decimal digits as BCD, padded with F.
std::array<std::uint8_t, 8> card_number_bcd(const std::string& digits);

// Blocks 4-5: card number (16 BCD digits, F-padded) type(1) city(2) | valid from(4) to(4).
struct IssuerInfo {
  std::array<std::uint8_t, 8> card_number_bcd{};
  CardType card_type = CardType::kAdult;
  std::array<std::uint8_t, 2> city{};
  std::array<std::uint8_t, 4> valid_from{};  // BCD YYYYMMDD
  std::array<std::uint8_t, 4> valid_to{};
  std::array<Block, 2> encode() const;
  static IssuerInfo decode(const Block& first, const Block& second);
};

// Blocks 24/25, 16 bytes: state(1) counter(2) record slot(1) balance before(4) amount(4)
// type(1) terminal seq low(2) | XOR of bytes 0..14 (1). The state byte takes only the two
// values below, so an erased block (all 00 or all FF, which pass a plain XOR) is not valid.
struct ProcessInfo {
  enum State : std::uint8_t { kDone = 0xAA, kInProgress = 0x55 };
  std::uint8_t state = kDone;
  std::uint16_t counter = 0;  // the transaction this block describes (last done, or running)
  std::uint8_t slot = 0;      // its record slot, index into PurseLayout::record_blocks
  std::uint32_t balance_before_fen = 0;
  std::uint32_t amount_fen = 0;
  std::uint8_t type = 0;  // txn::kPurchase or txn::kLoadEp; 0 for none
  std::uint16_t terminal_seq_low = 0;

  Block encode() const;
  static std::optional<ProcessInfo> decode(const Block& block);
  bool operator==(const ProcessInfo&) const = default;
};

// One cyclic transaction record, 16 bytes: counter(2) type(1) amount(3) balance after(3)
// date-time as seconds since 2000 (4) terminal id low bytes(2) | XOR of bytes 0..14 (1).
struct Record {
  std::uint16_t counter = 0;
  std::uint8_t type = 0;
  std::uint32_t amount_fen = 0;         // 24 bits
  std::uint32_t balance_after_fen = 0;  // 24 bits
  std::uint32_t epoch2000_s = 0;
  std::uint16_t terminal_low = 0;

  Block encode() const;
  static std::optional<Record> decode(const Block& block);
  bool operator==(const Record&) const = default;
};

// What an issuer writes into a new M1 purse card.
struct M1Image {
  Uid4 uid{};
  std::uint32_t balance_fen = 0;
  IssuerInfo issuer;
  std::array<Key6, kSectors> key_a{};  // sectors outside the purse keep the transport keys
  std::array<Key6, kSectors> key_b{};
};
// A new purse card: keys of the purse sectors (1-6) derived from the M1 master by the UID,
// the others left at the transport key.
M1Image m1_image(const Uid4& uid, std::uint32_t balance_fen, const IssuerInfo& issuer,
                 const crypto::Key16& m1_master);
// Every block as personalised: block 0, issuer info, purse and backup value blocks, process
// information (done, counter 0), empty record blocks, trailers with the sectors' access.
std::array<Block, kBlocks> personalised_blocks(const M1Image& image,
                                               const PurseLayout& layout = kPurseLayout);

}  // namespace citycard::protocol::m1
