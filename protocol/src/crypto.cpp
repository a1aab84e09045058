#include "citycard/protocol/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace citycard::protocol::crypto {
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
void encrypt_raw(const EVP_CIPHER* cipher, const std::uint8_t* key, const std::uint8_t* in,
                 std::size_t len, std::uint8_t* out) {
  static const std::uint8_t kZeroIv[16] = {};
  EVP_CIPHER_CTX* ctx = thread_ctx();
  if (EVP_EncryptInit_ex2(ctx, cipher, key, kZeroIv, nullptr) != 1) die("EncryptInit");
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

Mac4 cbc_mac(const EVP_CIPHER* cbc, const std::uint8_t* key, ByteView data, std::size_t block) {
  Bytes padded = pad_m2(data, block);
  Bytes out(padded.size());
  encrypt_raw(cbc, key, padded.data(), padded.size(), out.data());
  const std::size_t last = out.size() - block;
  return {out[last], out[last + 1], out[last + 2], out[last + 3]};
}

Block16 pad_to_16(const Block8& b) {
  Block16 out{};
  for (int i = 0; i < 8; ++i) out[i] = b[i];
  out[8] = 0x80;
  return out;
}

SessionKey derive_session(Algorithm alg, const Key16& key, const Block8& input) {
  SessionKey sk{alg, {}};
  if (alg == Algorithm::kTripleDes) {
    Block8 k = tdes_encrypt(key, input);
    for (int i = 0; i < 8; ++i) sk.bytes[i] = k[i];
  } else {
    sk.bytes = sm4_encrypt(key, pad_to_16(input));
  }
  return sk;
}

}  // namespace

std::optional<Algorithm> algorithm_from_id(std::uint8_t id) {
  switch (id) {
    case 0x00: return Algorithm::kTripleDes;
    case 0x04: return Algorithm::kSm4;
    default: return std::nullopt;
  }
}

Block8 tdes_encrypt(const Key16& key, const Block8& in) {
  Block8 out{};
  encrypt_raw(ciphers().des_ede_ecb, key.data(), in.data(), 8, out.data());
  return out;
}

Block16 sm4_encrypt(const Key16& key, const Block16& in) {
  Block16 out{};
  encrypt_raw(ciphers().sm4_ecb, key.data(), in.data(), 16, out.data());
  return out;
}

Mac4 des_mac(const Block8& key8, ByteView data) {
  std::uint8_t kk[16];
  for (int i = 0; i < 8; ++i) kk[i] = kk[i + 8] = key8[i];
  return cbc_mac(ciphers().des_ede_cbc, kk, data, 8);
}

Mac4 sm4_mac(const Key16& key, ByteView data) {
  return cbc_mac(ciphers().sm4_cbc, key.data(), data, 16);
}

Mac4 tdes_mac(const Key16& key, ByteView data) {
  return cbc_mac(ciphers().des_ede_cbc, key.data(), data, 8);
}

Mac4 mac(const SessionKey& key, ByteView data) {
  if (key.algorithm == Algorithm::kTripleDes) {
    Block8 k8;
    for (int i = 0; i < 8; ++i) k8[i] = key.bytes[i];
    return des_mac(k8, data);
  }
  return sm4_mac(key.bytes, data);
}

Key16 diversify(Algorithm alg, const Key16& master, const Serial8& serial) {
  Key16 out{};
  if (alg == Algorithm::kTripleDes) {
    Block8 d, nd;
    for (int i = 0; i < 8; ++i) {
      d[i] = serial[i];
      nd[i] = static_cast<std::uint8_t>(~serial[i]);
    }
    Block8 left = tdes_encrypt(master, d), right = tdes_encrypt(master, nd);
    for (int i = 0; i < 8; ++i) {
      out[i] = left[i];
      out[i + 8] = right[i];
    }
  } else {
    Block16 in;
    for (int i = 0; i < 8; ++i) {
      in[i] = serial[i];
      in[i + 8] = static_cast<std::uint8_t>(~serial[i]);
    }
    out = sm4_encrypt(master, in);
  }
  return out;
}

SessionKey purchase_session_key(Algorithm alg, const Key16& dpk, const Random4& random,
                                std::uint16_t offline_counter, std::uint32_t terminal_seq) {
  const Block8 input{random[0],
                     random[1],
                     random[2],
                     random[3],
                     static_cast<std::uint8_t>(offline_counter >> 8),
                     static_cast<std::uint8_t>(offline_counter),
                     static_cast<std::uint8_t>(terminal_seq >> 8),
                     static_cast<std::uint8_t>(terminal_seq)};
  return derive_session(alg, dpk, input);
}

SessionKey load_session_key(Algorithm alg, const Key16& dlk, const Random4& random,
                            std::uint16_t online_counter) {
  const Block8 input{random[0],
                     random[1],
                     random[2],
                     random[3],
                     static_cast<std::uint8_t>(online_counter >> 8),
                     static_cast<std::uint8_t>(online_counter),
                     0x80,
                     0x00};
  return derive_session(alg, dlk, input);
}

SessionKey tac_key(Algorithm alg, const Key16& dtk) {
  SessionKey sk{alg, {}};
  if (alg == Algorithm::kTripleDes) {
    for (int i = 0; i < 8; ++i) sk.bytes[i] = static_cast<std::uint8_t>(dtk[i] ^ dtk[i + 8]);
  } else {
    sk.bytes = dtk;
  }
  return sk;
}

Mac4 purchase_mac1(const SessionKey& sespk, std::uint32_t amount_fen, std::uint8_t type,
                   const TerminalId& terminal, const DateTime7& datetime) {
  Bytes d;
  d.reserve(18);
  put_u32be(d, amount_fen);
  put_u8(d, type);
  put_bytes(d, terminal);
  put_bytes(d, datetime);
  return mac(sespk, d);
}

Mac4 purchase_mac2(const SessionKey& sespk, std::uint32_t amount_fen) {
  Bytes d;
  put_u32be(d, amount_fen);
  return mac(sespk, d);
}

Mac4 purchase_tac(const SessionKey& tac, std::uint32_t amount_fen, std::uint8_t type,
                  const TerminalId& terminal, std::uint32_t terminal_seq,
                  const DateTime7& datetime) {
  Bytes d;
  d.reserve(22);
  put_u32be(d, amount_fen);
  put_u8(d, type);
  put_bytes(d, terminal);
  put_u32be(d, terminal_seq);
  put_bytes(d, datetime);
  return mac(tac, d);
}

Mac4 load_mac1(const SessionKey& seslk, std::uint32_t balance_before_fen, std::uint32_t amount_fen,
               std::uint8_t type, const TerminalId& terminal) {
  Bytes d;
  put_u32be(d, balance_before_fen);
  put_u32be(d, amount_fen);
  put_u8(d, type);
  put_bytes(d, terminal);
  return mac(seslk, d);
}

Mac4 load_mac2(const SessionKey& seslk, std::uint32_t amount_fen, std::uint8_t type,
               const TerminalId& terminal, const DateTime7& datetime) {
  Bytes d;
  put_u32be(d, amount_fen);
  put_u8(d, type);
  put_bytes(d, terminal);
  put_bytes(d, datetime);  // date(4) || time(3) is the 7-byte date-time
  return mac(seslk, d);
}

Mac4 load_tac(const SessionKey& tac, std::uint32_t balance_after_fen, std::uint16_t online_counter,
              std::uint32_t amount_fen, std::uint8_t type, const TerminalId& terminal,
              const DateTime7& datetime) {
  Bytes d;
  put_u32be(d, balance_after_fen);
  put_u16be(d, online_counter);
  put_u32be(d, amount_fen);
  put_u8(d, type);
  put_bytes(d, terminal);
  put_bytes(d, datetime);
  return mac(tac, d);
}

bool mac_equal(const Mac4& a, const Mac4& b) { return CRYPTO_memcmp(a.data(), b.data(), 4) == 0; }

}  // namespace citycard::protocol::crypto
