// The records a composite (capp) purchase writes through UPDATE CAPP DATA CACHE, which
// terminals write and read and the clearing centre may receive: the 48-byte travel record of
// file 0x1E and the 128-byte metro record of file 0x1A (STANDARDS.md, "Files").
//
// Travel record: the field order and sizes are STANDARDS.md's; padding to 48 with zeros.
// Metro record: STANDARDS.md gives only its purpose (entry station, time, state for the exit
// fare); the layout below is OUR reading, kept in this one place.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/purse.h"

namespace citycard::protocol {

// File 0x1E, 48 bytes: type(1) terminal(8) sub-type(1) station(7) amount(4) balance after(4)
// date-time(7) city(2) institution(8) padding(6).
struct TravelRecord {
  static constexpr std::size_t kSize = 48;
  std::uint8_t type = txn::kCappPurchase;
  std::array<std::uint8_t, 8> terminal{};  // device number (PSAM terminal id, left-padded)
  std::uint8_t sub_type = 0;               // e.g. 01 boarding, 02 alighting (operator's)
  std::array<std::uint8_t, 7> station{};   // route / stop code, operator-defined
  std::uint32_t amount_fen = 0;
  std::uint32_t balance_after_fen = 0;
  DateTime7 datetime{};
  std::array<std::uint8_t, 2> city{};
  std::array<std::uint8_t, 8> institution{};

  Bytes encode() const;
  static std::optional<TravelRecord> decode(ByteView b);  // nullopt unless 48 bytes
  bool operator==(const TravelRecord&) const = default;
};

// File 0x1A, 128 bytes (OUR layout): state(1) line(1) entry station(2) entry device(4)
// entry date-time(7) exit station(2) exit date-time(7) fare(4) then zeros.
struct MetroRecord {
  static constexpr std::size_t kSize = 128;
  enum State : std::uint8_t { kNone = 0x00, kEntered = 0x01, kExited = 0x02 };
  std::uint8_t state = kNone;
  std::uint8_t line = 0;
  std::uint16_t entry_station = 0;
  std::array<std::uint8_t, 4> entry_device{};
  DateTime7 entry_datetime{};
  std::uint16_t exit_station = 0;
  DateTime7 exit_datetime{};
  std::uint32_t fare_fen = 0;

  Bytes encode() const;
  static std::optional<MetroRecord> decode(ByteView b);  // nullopt unless 128 bytes
  bool operator==(const MetroRecord&) const = default;
};

}  // namespace citycard::protocol
