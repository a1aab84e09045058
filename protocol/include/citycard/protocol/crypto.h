// ED/EP purse cryptography (STANDARDS.md, "Cryptography"): key diversification, session
// keys, MAC1/MAC2/TAC for purchase and load. Everything that computes one of these values
// lives here, in one place, so the card, the PSAM and the backend cannot drift apart.
//
// Algorithms: 3DES (algorithm id 00) is the confirmed one. SM4 (algorithm id 04) for ED/EP
// is NOT confirmed by a public source; our reading is documented at each function and pinned
// by a test, so that a later correction changes one place.
//
// Speed: DES and 3DES run on precomputed key schedules (des.h); SM4 through OpenSSL EVP. A
// caller that uses one session key several times can schedule it once as a MacKey. The EVP
// implementation the fast path replaced is kept as an oracle and baseline (crypto_evp.h).
//
// Thread safety: all functions are reentrant; OpenSSL contexts are thread-local.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "citycard/protocol/bytes.h"
#include "citycard/protocol/des.h"
#include "citycard/protocol/purse.h"

namespace citycard::protocol::crypto {

enum class Algorithm : std::uint8_t { kTripleDes = 0x00, kSm4 = 0x04 };
std::optional<Algorithm> algorithm_from_id(std::uint8_t id);

using Key16 = std::array<std::uint8_t, 16>;
using Block8 = std::array<std::uint8_t, 8>;
using Block16 = std::array<std::uint8_t, 16>;

// A MAC key: for 3DES purses an 8-byte single-DES key (bytes 0..7 used); for SM4, 16 bytes.
struct SessionKey {
  Algorithm algorithm = Algorithm::kTripleDes;
  Block16 bytes{};
  bool operator==(const SessionKey&) const = default;
};

// Block primitives (ECB, one block, no padding).
Block8 tdes_encrypt(const Key16& key, const Block8& in);   // 2-key 3DES (DES-EDE)
Block16 sm4_encrypt(const Key16& key, const Block16& in);

// CBC-MAC, IV zero, ISO 9797-1 padding method 2 (80 00..; a whole extra block when the data
// is already aligned), leftmost 4 bytes of the last block.
// Single DES with an 8-byte key, computed as DES-EDE with K||K (OpenSSL's default provider).
Mac4 des_mac(const Block8& key8, ByteView data);
Mac4 sm4_mac(const Key16& key, ByteView data);
// Full 2-key 3DES CBC-MAC (ISO 9797-1 algorithm 1): used for batch signatures and the PSAM's
// general MAC (80FA).
Mac4 tdes_mac(const Key16& key, ByteView data);
Mac4 mac(const SessionKey& key, ByteView data);

// Card key from an issuer master key and the card application serial.
// 3DES: left = 3DES(MK, D), right = 3DES(MK, NOT D). SM4: SM4(MK, D || NOT D).
Key16 diversify(Algorithm alg, const Key16& master, const Serial8& serial);

// SESPK = ENC(DPK, random(4) || offline counter(2) || terminal seq low 2 bytes).
// SM4 (unconfirmed reading): the 8 input bytes padded with 80 00.. to one 16-byte block.
SessionKey purchase_session_key(Algorithm alg, const Key16& dpk, const Random4& random,
                                std::uint16_t offline_counter, std::uint32_t terminal_seq);
// SESLK = ENC(DLK, random(4) || online counter(2) || 8000). SM4 as above.
SessionKey load_session_key(Algorithm alg, const Key16& dlk, const Random4& random,
                            std::uint16_t online_counter);
// TAC key: 3DES: DTK_left XOR DTK_right (8 bytes). SM4 (unconfirmed reading): DTK itself.
SessionKey tac_key(Algorithm alg, const Key16& dtk);

// Purchase: MAC1 over amount(4) type(1) terminal(6) date-time(7); MAC2 over amount(4);
// TAC over amount(4) type(1) terminal(6) terminal seq(4) date-time(7).
Mac4 purchase_mac1(const SessionKey& sespk, std::uint32_t amount_fen, std::uint8_t type,
                   const TerminalId& terminal, const DateTime7& datetime);
Mac4 purchase_mac2(const SessionKey& sespk, std::uint32_t amount_fen);
Mac4 purchase_tac(const SessionKey& tac, std::uint32_t amount_fen, std::uint8_t type,
                  const TerminalId& terminal, std::uint32_t terminal_seq,
                  const DateTime7& datetime);

// Load: MAC1 over balance before(4) amount(4) type(1) terminal(6);
// MAC2 over amount(4) type(1) terminal(6) date(4) time(3);
// TAC over balance after(4) online counter(2) amount(4) type(1) terminal(6) date-time(7).
Mac4 load_mac1(const SessionKey& seslk, std::uint32_t balance_before_fen, std::uint32_t amount_fen,
               std::uint8_t type, const TerminalId& terminal);
Mac4 load_mac2(const SessionKey& seslk, std::uint32_t amount_fen, std::uint8_t type,
               const TerminalId& terminal, const DateTime7& datetime);
Mac4 load_tac(const SessionKey& tac, std::uint32_t balance_after_fen, std::uint16_t online_counter,
              std::uint32_t amount_fen, std::uint8_t type, const TerminalId& terminal,
              const DateTime7& datetime);

// A session key scheduled once, for callers that compute several MACs under it (MAC1, MAC2).
// Gives the same MACs as the SessionKey it was made from.
class MacKey {
 public:
  explicit MacKey(const SessionKey& key);
  Algorithm algorithm() const { return algorithm_; }
  Mac4 mac(ByteView data) const;

 private:
  Algorithm algorithm_;
  DesKey des_;   // 3DES purses: the 8-byte single-DES session key, scheduled
  Key16 key_;    // the raw key: SM4 purses, and the EVP baseline (crypto_evp.h)
};

Mac4 purchase_mac1(const MacKey& sespk, std::uint32_t amount_fen, std::uint8_t type,
                   const TerminalId& terminal, const DateTime7& datetime);
Mac4 purchase_mac2(const MacKey& sespk, std::uint32_t amount_fen);
Mac4 purchase_tac(const MacKey& tac, std::uint32_t amount_fen, std::uint8_t type,
                  const TerminalId& terminal, std::uint32_t terminal_seq,
                  const DateTime7& datetime);
Mac4 load_mac1(const MacKey& seslk, std::uint32_t balance_before_fen, std::uint32_t amount_fen,
               std::uint8_t type, const TerminalId& terminal);
Mac4 load_mac2(const MacKey& seslk, std::uint32_t amount_fen, std::uint8_t type,
               const TerminalId& terminal, const DateTime7& datetime);
Mac4 load_tac(const MacKey& tac, std::uint32_t balance_after_fen, std::uint16_t online_counter,
              std::uint32_t amount_fen, std::uint8_t type, const TerminalId& terminal,
              const DateTime7& datetime);

// CBC-MACs with an initial value (secure messaging; PSAM 80FA after 801A).
Mac4 tdes_mac(const Key16& key, const Block8& iv, ByteView data);
Mac4 sm4_mac(const Key16& key, const Block16& iv, ByteView data);

// Secure-messaging MAC of a card command (PBOC style): the IV is the card's 4-byte challenge
// followed by zeros, the data is the command header with Lc counting the MAC, padded by
// method 2. 3DES cards: full 3DES CBC-MAC under the 16-byte key (for the one block of a
// header-only command this equals the retail MAC, so the two readings agree). SM4 cards (our
// reading, unconfirmed): SM4 CBC-MAC with a 16-byte IV.
Mac4 secure_messaging_mac(Algorithm alg, const Key16& key, const Random4& challenge,
                          ByteView data);
// The MAC of APPLICATION BLOCK `84 1E 00 p2 04` under the card's DAMK.
Mac4 application_block_mac(Algorithm alg, const Key16& damk, const Random4& challenge,
                           std::uint8_t p2);

// Constant-time comparison of two MACs.
bool mac_equal(const Mac4& a, const Mac4& b);

}  // namespace citycard::protocol::crypto
