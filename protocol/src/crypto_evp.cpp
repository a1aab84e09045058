#include "citycard/protocol/crypto_evp.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace citycard::protocol::crypto::evp {
namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "citycard crypto: OpenSSL failed in %s\n", what);
  std::abort();
}

// Ciphers are fetched once; contexts are per thread and reused (an EVP_CIPHER_CTX allocation
// per MAC would cost more than the MAC itself).
struct CipherCache {
  EVP_CIPHER* des_ede_ecb = EVP_CIPHER_fetch(nullptr, "DES-EDE-ECB", nullptr);
  EVP_CIPHER* des_ede_cbc = EVP_CIPHER_fetch(nullptr, "DES-EDE-CBC", nullptr);
  EVP_CIPHER* sm4_ecb = EVP_CIPHER_fetch(nullptr, "SM4-ECB", nullptr);
  EVP_CIPHER* sm4_cbc = EVP_CIPHER_fetch(nullptr, "SM4-CBC", nullptr);
  CipherCache() {
    if (!des_ede_ecb || !des_ede_cbc || !sm4_ecb || !sm4_cbc) die("EVP_CIPHER_fetch");
  }
  ~CipherCache() {
    EVP_CIPHER_free(des_ede_ecb);
    EVP_CIPHER_free(des_ede_cbc);
    EVP_CIPHER_free(sm4_ecb);
    EVP_CIPHER_free(sm4_cbc);
  }
};
const CipherCache& ciphers() {
  static const CipherCache cache;
  return cache;
}

struct CtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
EVP_CIPHER_CTX* thread_ctx() {
  thread_local std::unique_ptr<EVP_CIPHER_CTX, CtxDeleter> ctx(EVP_CIPHER_CTX_new());
  if (!ctx) die("EVP_CIPHER_CTX_new");
  return ctx.get();
}

// Encrypts `len` bytes (a multiple of the block size) without padding.
void encrypt_raw(const EVP_CIPHER* cipher, const std::uint8_t* key, const std::uint8_t* iv,
                 const std::uint8_t* in, std::size_t len, std::uint8_t* out) {
  EVP_CIPHER_CTX* ctx = thread_ctx();
  if (EVP_EncryptInit_ex2(ctx, cipher, key, iv, nullptr) != 1) die("EncryptInit");
  EVP_CIPHER_CTX_set_padding(ctx, 0);
  int outl = 0;
  if (EVP_EncryptUpdate(ctx, out, &outl, in, static_cast<int>(len)) != 1) die("EncryptUpdate");
  int fin = 0;
  if (EVP_EncryptFinal_ex(ctx, out + outl, &fin) != 1) die("EncryptFinal");
}

// ISO 9797-1 method 2 padding to a multiple of `block`.
Bytes pad_m2(ByteView data, std::size_t block) {
  Bytes padded(data.begin(), data.end());
  padded.push_back(0x80);
  while (padded.size() % block != 0) padded.push_back(0x00);
  return padded;
}

Mac4 cbc_mac(const EVP_CIPHER* cbc, const std::uint8_t* key, const std::uint8_t* iv, ByteView data,
             std::size_t block) {
  Bytes padded = pad_m2(data, block);
  Bytes out(padded.size());
  encrypt_raw(cbc, key, iv, padded.data(), padded.size(), out.data());
  const std::size_t last = out.size() - block;
  return {out[last], out[last + 1], out[last + 2], out[last + 3]};
}

thread_local int forced_depth = 0;

}  // namespace

Block8 tdes_encrypt(const Key16& key, const Block8& in) {
  Block8 out{};
  encrypt_raw(ciphers().des_ede_ecb, key.data(), nullptr, in.data(), 8, out.data());
  return out;
}

Block16 sm4_encrypt(const Key16& key, const Block16& in) {
  Block16 out{};
  encrypt_raw(ciphers().sm4_ecb, key.data(), nullptr, in.data(), 16, out.data());
  return out;
}

Mac4 des_mac(const Block8& key8, ByteView data) {
  // Single DES is only in OpenSSL 3's legacy provider; DES-EDE with K||K is the same cipher.
  std::uint8_t kk[16];
  for (int i = 0; i < 8; ++i) kk[i] = kk[i + 8] = key8[i];
  static const std::uint8_t kZeroIv[8] = {};
  return cbc_mac(ciphers().des_ede_cbc, kk, kZeroIv, data, 8);
}

Mac4 tdes_mac(const Key16& key, ByteView data, const Block8& iv) {
  return cbc_mac(ciphers().des_ede_cbc, key.data(), iv.data(), data, 8);
}

Mac4 sm4_mac(const Key16& key, ByteView data, const Block16& iv) {
  return cbc_mac(ciphers().sm4_cbc, key.data(), iv.data(), data, 16);
}

ScopedEvpCrypto::ScopedEvpCrypto() {
  ++forced_depth;
}
ScopedEvpCrypto::~ScopedEvpCrypto() {
  --forced_depth;
}
bool evp_forced() {
  return forced_depth > 0;
}

}  // namespace citycard::protocol::crypto::evp
