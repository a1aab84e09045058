// ISO 7816-4 command and response APDUs (short form), and the status words the purse
// applications answer with (STANDARDS.md, "Status words seen in the field").
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"

namespace citycard::protocol {

// Status words. Names follow ISO 7816-4 where it has one; the 93xx/94xx are PBOC purse words.
namespace sw {
inline constexpr std::uint16_t kOk = 0x9000;
inline constexpr std::uint16_t kBlockedSelected = 0x6283;      // selected file invalidated
inline constexpr std::uint16_t kBlockedTerminated = 0x6284;
inline constexpr std::uint16_t kWrongLength = 0x6700;
inline constexpr std::uint16_t kWrongOffset = 0x6B00;            // outside the file
inline constexpr std::uint16_t kSecurityNotSatisfied = 0x6982;
inline constexpr std::uint16_t kAuthBlocked = 0x6983;
inline constexpr std::uint16_t kConditionsNotSatisfied = 0x6985;
inline constexpr std::uint16_t kCommandNotAllowed = 0x6986;     // e.g. DEBIT without INIT
inline constexpr std::uint16_t kWrongData = 0x6A80;
inline constexpr std::uint16_t kFileNotFound = 0x6A82;
inline constexpr std::uint16_t kRecordNotFound = 0x6A83;
inline constexpr std::uint16_t kWrongP1P2 = 0x6A86;
inline constexpr std::uint16_t kReferencedDataNotFound = 0x6A88;
inline constexpr std::uint16_t kInsNotSupported = 0x6D00;
inline constexpr std::uint16_t kClaNotSupported = 0x6E00;
inline constexpr std::uint16_t kMacInvalid = 0x9302;            // wrong MAC1 on DEBIT
inline constexpr std::uint16_t kAppBlockedPermanently = 0x9303;
inline constexpr std::uint16_t kInsufficientBalance = 0x9401;
inline constexpr std::uint16_t kKeyIndexNotSupported = 0x9403;
inline constexpr std::uint16_t kMacError = 0x9406;              // MAC not available
inline constexpr std::uint16_t kCounterLimit = 0x9402;          // transaction counter at its max
inline constexpr std::uint16_t kNoChallenge = 0x6984;           // no valid challenge (random)
inline constexpr std::uint16_t kSmMacWrong = 0x6988;            // secure-messaging MAC wrong
inline constexpr std::uint16_t kPinWrongBase = 0x63C0;          // | tries left (63Cx)
inline constexpr std::uint16_t kPinBlocked = kAuthBlocked;      // 6983: no tries left
inline constexpr std::uint16_t kWrongLengthLe = 0x6C00;         // | the right Le (6Cxx)
}  // namespace sw

// A short human name for a status word, for traces and error messages.
const char* sw_name(std::uint16_t sw);

struct Command {
  std::uint8_t cla = 0;
  std::uint8_t ins = 0;
  std::uint8_t p1 = 0;
  std::uint8_t p2 = 0;
  Bytes data;                        // Lc = data.size(), at most 255
  std::optional<std::uint16_t> le;   // expected length, 1..256 (256 encoded as 00)

  Bytes encode() const;
  // Parses a short-form C-APDU (cases 1-4). Rejects extended length, Lc that does not match
  // the bytes that follow, and frames shorter than 4 bytes.
  static Result<Command> parse(ByteView bytes);
  std::string to_string() const;
};

struct Response {
  Bytes data;
  std::uint16_t sw = sw::kOk;

  bool ok() const { return sw == sw::kOk; }
  Bytes encode() const;
  static Result<Response> parse(ByteView bytes);
  static Response status(std::uint16_t s) { return Response{{}, s}; }
};

}  // namespace citycard::protocol
