#include "citycard/protocol/crypto.h"

#include <openssl/crypto.h>

#include <cstring>

#include "citycard/protocol/crypto_evp.h"

namespace citycard::protocol::crypto {
namespace {

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

// MAC inputs are short and fixed: built on the stack, not in a vector.
template <std::size_t N>
struct Fields {
  std::array<std::uint8_t, N> b{};
  std::size_t n = 0;
  Fields& u8(std::uint8_t v) {
    b[n++] = v;
    return *this;
  }
  Fields& u16(std::uint16_t v) {
    return u8(static_cast<std::uint8_t>(v >> 8)).u8(static_cast<std::uint8_t>(v));
  }
  Fields& u32(std::uint32_t v) {
    return u16(static_cast<std::uint16_t>(v >> 16)).u16(static_cast<std::uint16_t>(v));
  }
  template <std::size_t M>
  Fields& bytes(const std::array<std::uint8_t, M>& a) {
    std::memcpy(b.data() + n, a.data(), M);
    n += M;
    return *this;
  }
  ByteView view() const { return ByteView(b.data(), n); }
};

bool fast() {
  return !evp::evp_forced();
}

}  // namespace

std::optional<Algorithm> algorithm_from_id(std::uint8_t id) {
  switch (id) {
    case 0x00:
      return Algorithm::kTripleDes;
    case 0x04:
      return Algorithm::kSm4;
    default:
      return std::nullopt;
  }
}

Block8 tdes_encrypt(const Key16& key, const Block8& in) {
  if (!fast()) return evp::tdes_encrypt(key, in);
  return TdesKey(key).encrypt(in);
}

Block16 sm4_encrypt(const Key16& key, const Block16& in) {
  return evp::sm4_encrypt(key, in);
}

Mac4 des_mac(const Block8& key8, ByteView data) {
  if (!fast()) return evp::des_mac(key8, data);
  return DesKey(key8).mac(data);
}

Mac4 sm4_mac(const Key16& key, ByteView data) {
  return evp::sm4_mac(key, data);
}

Mac4 tdes_mac(const Key16& key, ByteView data) {
  if (!fast()) return evp::tdes_mac(key, data);
  return TdesKey(key).mac(data);
}

Mac4 tdes_mac(const Key16& key, const Block8& iv, ByteView data) {
  if (!fast()) return evp::tdes_mac(key, data, iv);
  return TdesKey(key).mac(iv, data);
}

Mac4 sm4_mac(const Key16& key, const Block16& iv, ByteView data) {
  return evp::sm4_mac(key, data, iv);
}

Mac4 mac(const SessionKey& key, ByteView data) {
  if (key.algorithm == Algorithm::kTripleDes && !fast()) {
    Block8 k8;
    std::memcpy(k8.data(), key.bytes.data(), 8);
    return evp::des_mac(k8, data);
  }
  return MacKey(key).mac(data);
}

MacKey::MacKey(const SessionKey& key)
    : algorithm_(key.algorithm), des_(key.bytes.data()), key_(key.bytes) {}

Mac4 MacKey::mac(ByteView data) const {
  if (algorithm_ == Algorithm::kSm4) return evp::sm4_mac(key_, data);
  if (!fast()) {
    Block8 k8;
    std::memcpy(k8.data(), key_.data(), 8);
    return evp::des_mac(k8, data);
  }
  return des_.mac(data);
}

Key16 diversify(Algorithm alg, const Key16& master, const Serial8& serial) {
  if (alg == Algorithm::kTripleDes) {
    if (fast()) return diversify(TdesKey(master), serial);
    Block8 d, nd;
    for (int i = 0; i < 8; ++i) {
      d[i] = serial[i];
      nd[i] = static_cast<std::uint8_t>(~serial[i]);
    }
    const Block8 left = evp::tdes_encrypt(master, d), right = evp::tdes_encrypt(master, nd);
    Key16 out{};
    for (int i = 0; i < 8; ++i) {
      out[i] = left[i];
      out[i + 8] = right[i];
    }
    return out;
  }
  Block16 in;
  for (int i = 0; i < 8; ++i) {
    in[i] = serial[i];
    in[i + 8] = static_cast<std::uint8_t>(~serial[i]);
  }
  return sm4_encrypt(master, in);
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

// ---- MAC inputs, in one place ------------------------------------------------------------

Mac4 purchase_mac1(const MacKey& sespk, std::uint32_t amount_fen, std::uint8_t type,
                   const TerminalId& terminal, const DateTime7& datetime) {
  return sespk.mac(Fields<18>{}.u32(amount_fen).u8(type).bytes(terminal).bytes(datetime).view());
}

Mac4 purchase_mac2(const MacKey& sespk, std::uint32_t amount_fen) {
  return sespk.mac(Fields<4>{}.u32(amount_fen).view());
}

Mac4 purchase_tac(const MacKey& tac, std::uint32_t amount_fen, std::uint8_t type,
                  const TerminalId& terminal, std::uint32_t terminal_seq,
                  const DateTime7& datetime) {
  return tac.mac(Fields<22>{}
                     .u32(amount_fen)
                     .u8(type)
                     .bytes(terminal)
                     .u32(terminal_seq)
                     .bytes(datetime)
                     .view());
}

Mac4 load_mac1(const MacKey& seslk, std::uint32_t balance_before_fen, std::uint32_t amount_fen,
               std::uint8_t type, const TerminalId& terminal) {
  return seslk.mac(
      Fields<15>{}.u32(balance_before_fen).u32(amount_fen).u8(type).bytes(terminal).view());
}

Mac4 load_mac2(const MacKey& seslk, std::uint32_t amount_fen, std::uint8_t type,
               const TerminalId& terminal, const DateTime7& datetime) {
  // date(4) || time(3) is the 7-byte date-time
  return seslk.mac(Fields<18>{}.u32(amount_fen).u8(type).bytes(terminal).bytes(datetime).view());
}

Mac4 load_tac(const MacKey& tac, std::uint32_t balance_after_fen, std::uint16_t online_counter,
              std::uint32_t amount_fen, std::uint8_t type, const TerminalId& terminal,
              const DateTime7& datetime) {
  return tac.mac(Fields<24>{}
                     .u32(balance_after_fen)
                     .u16(online_counter)
                     .u32(amount_fen)
                     .u8(type)
                     .bytes(terminal)
                     .bytes(datetime)
                     .view());
}

// The SessionKey forms: under ScopedEvpCrypto mac() computes through EVP from the raw key, as
// the original implementation did, without scheduling a DesKey first.
namespace {
Mac4 session_mac(const SessionKey& key, ByteView data) {
  return mac(key, data);
}
}  // namespace

Mac4 purchase_mac1(const SessionKey& sespk, std::uint32_t amount_fen, std::uint8_t type,
                   const TerminalId& terminal, const DateTime7& datetime) {
  return session_mac(sespk,
                     Fields<18>{}.u32(amount_fen).u8(type).bytes(terminal).bytes(datetime).view());
}

Mac4 purchase_mac2(const SessionKey& sespk, std::uint32_t amount_fen) {
  return session_mac(sespk, Fields<4>{}.u32(amount_fen).view());
}

Mac4 purchase_tac(const SessionKey& tac, std::uint32_t amount_fen, std::uint8_t type,
                  const TerminalId& terminal, std::uint32_t terminal_seq,
                  const DateTime7& datetime) {
  return session_mac(tac, Fields<22>{}
                              .u32(amount_fen)
                              .u8(type)
                              .bytes(terminal)
                              .u32(terminal_seq)
                              .bytes(datetime)
                              .view());
}

Mac4 load_mac1(const SessionKey& seslk, std::uint32_t balance_before_fen, std::uint32_t amount_fen,
               std::uint8_t type, const TerminalId& terminal) {
  return session_mac(
      seslk, Fields<15>{}.u32(balance_before_fen).u32(amount_fen).u8(type).bytes(terminal).view());
}

Mac4 load_mac2(const SessionKey& seslk, std::uint32_t amount_fen, std::uint8_t type,
               const TerminalId& terminal, const DateTime7& datetime) {
  return session_mac(seslk,
                     Fields<18>{}.u32(amount_fen).u8(type).bytes(terminal).bytes(datetime).view());
}

Mac4 load_tac(const SessionKey& tac, std::uint32_t balance_after_fen, std::uint16_t online_counter,
              std::uint32_t amount_fen, std::uint8_t type, const TerminalId& terminal,
              const DateTime7& datetime) {
  return session_mac(tac, Fields<24>{}
                              .u32(balance_after_fen)
                              .u16(online_counter)
                              .u32(amount_fen)
                              .u8(type)
                              .bytes(terminal)
                              .bytes(datetime)
                              .view());
}

Mac4 secure_messaging_mac(Algorithm alg, const Key16& key, const Random4& challenge,
                          ByteView data) {
  if (alg == Algorithm::kTripleDes) {
    const Block8 iv{challenge[0], challenge[1], challenge[2], challenge[3], 0, 0, 0, 0};
    return tdes_mac(key, iv, data);
  }
  Block16 iv{};
  for (int i = 0; i < 4; ++i) iv[i] = challenge[i];
  return sm4_mac(key, iv, data);
}

Mac4 application_block_mac(Algorithm alg, const Key16& damk, const Random4& challenge,
                           std::uint8_t p2) {
  const std::uint8_t header[5] = {0x84, 0x1E, 0x00, p2, 0x04};
  return secure_messaging_mac(alg, damk, challenge, ByteView(header, 5));
}

bool mac_equal(const Mac4& a, const Mac4& b) {
  return CRYPTO_memcmp(a.data(), b.data(), 4) == 0;
}

}  // namespace citycard::protocol::crypto
