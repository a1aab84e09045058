#include "citycard/protocol/apdu.h"

#include <cstdio>

namespace citycard::protocol {

const char* sw_name(std::uint16_t s) {
  switch (s) {
    case sw::kOk: return "ok";
    case sw::kBlockedSelected: return "application blocked (6283)";
    case sw::kBlockedTerminated: return "application terminated (6284)";
    case sw::kWrongLength: return "wrong length";
    case sw::kWrongOffset: return "offset outside the file";
    case sw::kReferencedDataNotFound: return "referenced data not found";
    case sw::kSecurityNotSatisfied: return "security status not satisfied";
    case sw::kAuthBlocked: return "authentication blocked";
    case sw::kConditionsNotSatisfied: return "conditions of use not satisfied";
    case sw::kCommandNotAllowed: return "command not allowed";
    case sw::kWrongData: return "wrong data";
    case sw::kFileNotFound: return "file or application not found";
    case sw::kRecordNotFound: return "record not found";
    case sw::kWrongP1P2: return "wrong P1/P2";
    case sw::kInsNotSupported: return "instruction not supported";
    case sw::kClaNotSupported: return "class not supported";
    case sw::kMacInvalid: return "MAC invalid";
    case sw::kAppBlockedPermanently: return "application permanently blocked";
    case sw::kInsufficientBalance: return "insufficient balance";
    case sw::kKeyIndexNotSupported: return "key index not supported";
    case sw::kMacError: return "MAC not available";
    case sw::kCounterLimit: return "transaction counter at its limit";
    case sw::kNoChallenge: return "no valid challenge";
    case sw::kSmMacWrong: return "secure messaging MAC wrong";
    default:
      if ((s & 0xFFF0) == sw::kPinWrongBase) return "PIN wrong (63Cx: x tries left)";
      if ((s & 0xFF00) == sw::kWrongLengthLe) return "wrong Le (6Cxx: xx is right)";
      return "unknown status";
  }
}

Bytes Command::encode() const {
  Bytes out{cla, ins, p1, p2};
  out.reserve(5 + data.size() + 1);
  if (!data.empty()) {
    CITYCARD_CHECK(data.size() <= 255, "short APDU data is at most 255 bytes");
    out.push_back(static_cast<std::uint8_t>(data.size()));
    put_bytes(out, data);
  }
  if (le) out.push_back(static_cast<std::uint8_t>(*le == 256 ? 0 : *le));
  return out;
}

Result<Command> Command::parse(ByteView b) {
  if (b.size() < 4) {
    return Result<Command>(Errc::kMalformed,
                           "APDU of " + std::to_string(b.size()) + " bytes: a header needs 4");
  }
  Command c{b[0], b[1], b[2], b[3], {}, std::nullopt};
  if (b.size() == 4) return c;                     // case 1
  if (b.size() == 5) {                             // case 2: Le only
    c.le = b[4] == 0 ? 256 : b[4];
    return c;
  }
  std::size_t lc = b[4];
  if (lc == 0) {
    return Result<Command>(Errc::kMalformed, "extended-length APDUs are not supported");
  }
  if (b.size() == 5 + lc) {                        // case 3
    c.data.assign(b.begin() + 5, b.end());
    return c;
  }
  if (b.size() == 6 + lc) {                        // case 4
    c.data.assign(b.begin() + 5, b.begin() + 5 + static_cast<std::ptrdiff_t>(lc));
    c.le = b[5 + lc] == 0 ? 256 : b[5 + lc];
    return c;
  }
  return Result<Command>(Errc::kMalformed, "APDU Lc=" + std::to_string(lc) + " but " +
                                               std::to_string(b.size() - 5) +
                                               " bytes follow the header");
}

std::string Command::to_string() const {
  char head[16];
  std::snprintf(head, sizeof head, "%02X%02X%02X%02X", cla, ins, p1, p2);
  std::string s = head;
  if (!data.empty()) {
    char lc[4];
    std::snprintf(lc, sizeof lc, "%02X", static_cast<unsigned>(data.size()));
    s += lc;
    s += to_hex(data);
  }
  if (le) {
    char l[4];
    std::snprintf(l, sizeof l, "%02X", static_cast<unsigned>(*le & 0xff));
    s += l;
  }
  return s;
}

Bytes Response::encode() const {
  Bytes out = data;
  put_u16be(out, sw);
  return out;
}

Result<Response> Response::parse(ByteView b) {
  if (b.size() < 2) {
    return Result<Response>(Errc::kMalformed, "R-APDU of " + std::to_string(b.size()) +
                                                  " bytes: a status word needs 2");
  }
  Response r;
  r.data.assign(b.begin(), b.end() - 2);
  r.sw = get_u16be(b, b.size() - 2);
  return r;
}

}  // namespace citycard::protocol
