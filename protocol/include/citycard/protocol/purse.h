// Facts of the ED/EP purse applications that both the card and its counterparts need:
// AIDs, transaction types, file identifiers, the 0x18 log record, BCD date-times.
// Source: ../shared/docs/STANDARDS.md.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "citycard/protocol/bytes.h"

namespace citycard::protocol {

using TerminalId = std::array<std::uint8_t, 6>;   // PSAM terminal number
using DateTime7 = std::array<std::uint8_t, 7>;    // BCD YYYYMMDDhhmmss
using Serial8 = std::array<std::uint8_t, 8>;      // card application serial number
using Random4 = std::array<std::uint8_t, 4>;
using Mac4 = std::array<std::uint8_t, 4>;

enum class Family : std::uint8_t { kJtt978 = 1, kCjt166 = 2 };

// Application identifiers.
inline const Bytes& aid_for(Family f) {
  static const Bytes kJtt{0xA0, 0x00, 0x00, 0x06, 0x32, 0x01, 0x01, 0x05};
  static const Bytes kCjt{0xA0, 0x00, 0x00, 0x00, 0x03, 0x86, 0x98, 0x07, 0x01};
  return f == Family::kJtt978 ? kJtt : kCjt;
}

// The PSAM application DF that serves a card family's purchases (STANDARDS.md).
inline constexpr std::uint16_t psam_df_for(Family f) {
  return f == Family::kJtt978 ? 0x8011 : 0x1001;
}
const char* family_name(Family f);  // "jtt978", "cjt166"

// Transaction type codes carried in MACs, TACs and records.
namespace txn {
inline constexpr std::uint8_t kLoadEd = 0x01;
inline constexpr std::uint8_t kLoadEp = 0x02;
inline constexpr std::uint8_t kPurchase = 0x06;
inline constexpr std::uint8_t kCappPurchase = 0x09;
// The P2 of GET TRANSACTION PROVE that asks for the proof of a load. NOT confirmed by a public
// source; our reading is the load's own transaction type. Cards and terminals take it as an
// option (CardProfile::load_prove_type, LoadOptions::prove_type) defaulting to this.
inline constexpr std::uint8_t kLoadProveTypeDefault = kLoadEp;
}  // namespace txn

// Short file identifiers of the purse application.
namespace sfi {
inline constexpr std::uint8_t kIssuer = 0x15;       // common application data
inline constexpr std::uint8_t kHolder = 0x16;       // cardholder data
inline constexpr std::uint8_t kLog = 0x18;          // cyclic transaction log, 23-byte records
inline constexpr std::uint8_t kMetro = 0x1A;        // metro record, 128 bytes
inline constexpr std::uint8_t kTravel = 0x1E;       // travel (process) record, 48 bytes
}  // namespace sfi

// One record of file 0x18 (23 bytes):
// counter(2) overdraft(3) amount(4) type(1) terminal(6) date-time(7).
struct LogRecord {
  std::uint16_t counter = 0;
  std::uint32_t overdraft_fen = 0;   // 24 bits on the card
  std::uint32_t amount_fen = 0;
  std::uint8_t type = 0;
  TerminalId terminal{};
  DateTime7 datetime{};

  static constexpr std::size_t kSize = 23;
  Bytes encode() const;
  static std::optional<LogRecord> decode(ByteView b);
  bool operator==(const LogRecord&) const = default;
};

// A calendar time as the card sees it. Seconds since 2000-01-01 00:00:00 (local city time,
// no time zone on the card) <-> BCD YYYYMMDDhhmmss.
DateTime7 datetime_from_epoch2000(std::int64_t seconds);
std::int64_t epoch2000_from_datetime(const DateTime7& dt);
std::string datetime_to_string(const DateTime7& dt);  // "2012-02-29 13:51:00"
// BCD YYYYMMDD for validity dates in file 0x15.
std::array<std::uint8_t, 4> date_bcd(int year, int month, int day);

}  // namespace citycard::protocol
