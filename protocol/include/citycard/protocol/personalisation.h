// What an issuer writes into a new card or PSAM. The backend's issuance produces these; the
// card and PSAM models consume them. They are the only way key material crosses from the
// clearing centre to devices, so devices never see a master key other than the PSAM's.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "citycard/protocol/crypto.h"
#include "citycard/protocol/purse.h"

namespace citycard::protocol {

enum class CardType : std::uint8_t { kAdult = 0, kStudent = 1, kElder = 2, kStaff = 3 };
const char* card_type_name(CardType t);

// A CPU purse card's application, as personalised.
struct CardImage {
  Family family = Family::kJtt978;
  Serial8 serial{};                          // application serial: the diversification data
  std::string card_number;                   // printed number, digits
  CardType card_type = CardType::kAdult;
  std::uint8_t key_version = 1;
  crypto::Algorithm algorithm = crypto::Algorithm::kTripleDes;
  crypto::Key16 dpk{};                       // diversified purchase key
  crypto::Key16 dlk{};                       // diversified load key
  crypto::Key16 dtk{};                       // diversified TAC key
  crypto::Key16 damk{};                      // diversified application maintenance key
                                             // (APPLICATION BLOCK: the blacklist lock)
  std::uint32_t balance_fen = 0;
  std::uint32_t overdraft_limit_fen = 0;
  std::array<std::uint8_t, 4> valid_from{};  // BCD YYYYMMDD
  std::array<std::uint8_t, 4> valid_to{};
  std::array<std::uint8_t, 8> issuer_data{}; // first 8 bytes of file 0x15 (issuer, city, ...)
  std::string pin = "123456";                // cardholder PIN, 4..12 decimal digits
  std::uint16_t online_counter = 0;          // load counter at issue
  std::uint16_t offline_counter = 0;         // purchase counter at issue
};

// A PSAM as installed in one terminal.
struct PsamImage {
  TerminalId terminal_id{};
  std::uint8_t key_version = 1;
  crypto::Key16 purchase_master{};           // MPK: diversified per card with 801A
  crypto::Key16 batch_key{};                 // signs upload batches (80FA)
  crypto::Key16 maintenance_master{};        // MAMK: diversified per card with 801A for the
                                             // blacklist lock's 80FA MAC
  std::uint32_t next_sequence = 1;           // terminal transaction sequence
};

// The issuer's master keys of one key version.
struct IssuerKeys {
  std::uint8_t key_version = 1;
  crypto::Key16 purchase{};                  // MPK
  crypto::Key16 load{};                      // MLK
  crypto::Key16 tac{};                       // MTK
  crypto::Key16 batch{};                     // master key of terminal batch signatures
  crypto::Key16 maintenance{};               // MAMK: application maintenance (blacklist lock)
  crypto::Key16 m1{};                        // master of M1 sector keys (protocol/mifare.h)
};

// The batch-signing key of one terminal: the batch master diversified by the terminal id
// (left-padded with two zero bytes to 8).
crypto::Key16 terminal_batch_key(const crypto::Key16& batch_master, const TerminalId& terminal);

// Card keys from the issuer's masters (3DES or SM4 diversification by the card serial):
// DPK, DLK, DTK and DAMK.
void derive_card_keys(const IssuerKeys& keys, crypto::Algorithm alg, CardImage& card);

}  // namespace citycard::protocol
