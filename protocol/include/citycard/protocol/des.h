// DES and 2-key 3DES with the key schedule computed once and kept: the fast path behind
// crypto.h. A purse transaction runs about a dozen block operations under a handful of keys;
// re-initialising an OpenSSL EVP context per MAC cost more than the MACs themselves, so the
// PSAM keeps its master key scheduled and the card and PSAM schedule each session key once.
//
// Results are byte-identical to the EVP implementation in crypto_evp.h, which stays as the
// oracle (protocol tests compare the two on random inputs) and as the benchmarks' baseline.
//
// A DesKey/TdesKey is an immutable value: safe to share between threads once built. The
// schedule is stored as opaque bytes so that no includer sees OpenSSL's deprecated DES API.
#pragma once

#include <array>
#include <cstdint>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/purse.h"

namespace citycard::protocol::crypto {

using Key16 = std::array<std::uint8_t, 16>;
using Block8 = std::array<std::uint8_t, 8>;

// Single DES with an 8-byte key (parity bits ignored, as the purse standards use keys).
class DesKey {
 public:
  explicit DesKey(const Block8& key);
  DesKey(const std::uint8_t* key8);  // the first 8 bytes at key8

  Block8 encrypt(const Block8& in) const;
  // CBC-MAC, IV zero, ISO 9797-1 padding method 2, leftmost 4 bytes of the last block.
  Mac4 mac(ByteView data) const;

 private:
  alignas(8) std::array<std::uint8_t, 128> schedule_;
};

// 2-key 3DES (DES-EDE: K1, K2, K1) with a 16-byte key.
class TdesKey {
 public:
  explicit TdesKey(const Key16& key);

  Block8 encrypt(const Block8& in) const;
  // Full 3DES CBC-MAC (ISO 9797-1 algorithm 1), padding method 2, leftmost 4 bytes; the IV is
  // zero unless given.
  Mac4 mac(ByteView data) const;
  Mac4 mac(const Block8& iv, ByteView data) const;

 private:
  alignas(8) std::array<std::uint8_t, 128> k1_;
  alignas(8) std::array<std::uint8_t, 128> k2_;
};

// Card key diversification under a scheduled 3DES master: left = 3DES(MK, D), right =
// 3DES(MK, NOT D), D the card application serial. Same result as crypto::diversify(kTripleDes).
Key16 diversify(const TdesKey& master, const Serial8& serial);

}  // namespace citycard::protocol::crypto
