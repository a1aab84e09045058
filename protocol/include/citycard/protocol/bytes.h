// Byte strings and the big-endian field helpers every card command and record uses.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace citycard {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

// Lower-case hex, no separators.
std::string to_hex(ByteView bytes);
template <std::size_t N>
std::string to_hex(const std::array<std::uint8_t, N>& a) {
  return to_hex(ByteView(a.data(), a.size()));
}

// Parses hex (upper or lower case; spaces are skipped). Returns false on an odd count or a
// non-hex character, leaving `out` unspecified.
bool parse_hex(std::string_view text, Bytes& out);
// For literals in code and tests: a malformed literal is a programmer error and aborts.
Bytes from_hex(std::string_view text);
template <std::size_t N>
std::array<std::uint8_t, N> array_from_hex(std::string_view text) {
  Bytes b = from_hex(text);
  std::array<std::uint8_t, N> out{};
  if (b.size() != N) __builtin_trap();
  for (std::size_t i = 0; i < N; ++i) out[i] = b[i];
  return out;
}

inline void put_u8(Bytes& out, std::uint8_t v) { out.push_back(v); }
inline void put_u16be(Bytes& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}
inline void put_u24be(Bytes& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 16));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}
inline void put_u32be(Bytes& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 24));
  out.push_back(static_cast<std::uint8_t>(v >> 16));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}
inline void put_bytes(Bytes& out, ByteView v) { out.insert(out.end(), v.begin(), v.end()); }

// Readers take a view and an offset; the caller has checked the length.
inline std::uint16_t get_u16be(ByteView in, std::size_t off) {
  return static_cast<std::uint16_t>((in[off] << 8) | in[off + 1]);
}
inline std::uint32_t get_u24be(ByteView in, std::size_t off) {
  return (std::uint32_t{in[off]} << 16) | (std::uint32_t{in[off + 1]} << 8) | in[off + 2];
}
inline std::uint32_t get_u32be(ByteView in, std::size_t off) {
  return (std::uint32_t{in[off]} << 24) | (std::uint32_t{in[off + 1]} << 16) |
         (std::uint32_t{in[off + 2]} << 8) | in[off + 3];
}

template <std::size_t N>
std::array<std::uint8_t, N> take(ByteView in, std::size_t off) {
  std::array<std::uint8_t, N> out{};
  for (std::size_t i = 0; i < N; ++i) out[i] = in[off + i];
  return out;
}

}  // namespace citycard
