#include "citycard/protocol/bytes.h"

#include <cstdio>
#include <cstdlib>

namespace citycard {

std::string to_hex(ByteView bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.resize(bytes.size() * 2);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0x0f];
  }
  return out;
}

namespace {
int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool parse_hex(std::string_view text, Bytes& out) {
  out.clear();
  out.reserve(text.size() / 2);
  int high = -1;
  for (char c : text) {
    if (c == ' ' || c == ':') continue;
    int n = nibble(c);
    if (n < 0) return false;
    if (high < 0) {
      high = n;
    } else {
      out.push_back(static_cast<std::uint8_t>((high << 4) | n));
      high = -1;
    }
  }
  return high < 0;
}

Bytes from_hex(std::string_view text) {
  Bytes out;
  if (!parse_hex(text, out)) {
    std::fprintf(stderr, "from_hex: malformed literal '%.*s'\n", static_cast<int>(text.size()),
                 text.data());
    std::abort();
  }
  return out;
}

}  // namespace citycard
