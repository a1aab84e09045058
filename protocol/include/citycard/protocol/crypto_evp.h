// The block primitives of crypto.h computed through OpenSSL's EVP interface, one context
// initialisation per call. This was the first implementation; the fast path (des.h) replaced it
// for DES and 3DES. It stays for two jobs:
// - the oracle that protocol tests hold the fast path to, on random inputs, byte for byte;
// - the baseline the benchmarks measure the fast path against (ScopedEvpCrypto).
// SM4 still runs through EVP in both modes.
//
// Thread safety: reentrant; contexts are thread-local.
#pragma once

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/crypto.h"

namespace citycard::protocol::crypto::evp {

Block8 tdes_encrypt(const Key16& key, const Block8& in);
Block16 sm4_encrypt(const Key16& key, const Block16& in);
// CBC-MACs as in crypto.h: IV as given (zero by default), ISO 9797-1 padding method 2,
// leftmost 4 bytes of the last block.
Mac4 des_mac(const Block8& key8, ByteView data);
Mac4 tdes_mac(const Key16& key, ByteView data, const Block8& iv = {});
Mac4 sm4_mac(const Key16& key, ByteView data, const Block16& iv = {});

// While one of these lives, crypto.h's functions on this thread take the EVP path for DES and
// 3DES too, as they did before the fast path existed. For benchmarks and tests; nests.
class ScopedEvpCrypto {
 public:
  ScopedEvpCrypto();
  ~ScopedEvpCrypto();
  ScopedEvpCrypto(const ScopedEvpCrypto&) = delete;
  ScopedEvpCrypto& operator=(const ScopedEvpCrypto&) = delete;
};
// True while a ScopedEvpCrypto lives on this thread.
bool evp_forced();

}  // namespace citycard::protocol::crypto::evp
