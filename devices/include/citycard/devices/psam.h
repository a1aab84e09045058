// A PSAM (purchase secure access module) as installed in one terminal, personalised by a
// PsamImage. It holds the issuer's purchase master key and the terminal's batch-signing key;
// the terminal never sees either.
//
// Commands answered; anything else answers 6D00 (INS) or 6E00 (CLA):
//   00 A4 00 00 02 8011   SELECT the JT/T 978 application DF (any other FID 6A82)
//   00 B0 96 00 06        READ BINARY of file 0x16 in the MF: the terminal id (6 bytes).
//                         Readable with or without the DF selected, as terminals read it
//                         at power-on before selecting.
//   80 70 00 00 24        MAC1 for purchase -> terminal seq (4) MAC1 (4)
//   80 72 00 00 04        verify MAC2 -> 9000 or 9302 (needs a preceding 8070, else 6985)
//   80 FA P1 00 Lc        general MAC with the batch key: P1 07 = a block with more to
//                         follow (answers 9000, no data), P1 05 = the last or only block
//                         -> MAC (4) = crypto::tdes_mac(batch_key, all blocks). The P1
//                         chaining codes are our reading, not confirmed by a public source.
//
// MAC1: the card's purchase key is diversified from the purchase master by the card
// application serial (crypto::diversify, one level, as protocol::derive_card_keys does). The
// 8 bytes of diversification data in the 8070 input are accepted and carried but do not enter
// the key: our key hierarchy has no second (city/group) level yet.
// Status words: as the card (6700 wrong length or malformed, 6A86 wrong P1/P2, 6985 before the
// DF is selected); 9403 for a key version the PSAM does not hold; 6A80 for an unknown
// algorithm id or transaction type; 6985 when the terminal sequence is exhausted.
// A wrong MAC2 leaves the MAC1 session in place (the terminal may fetch MAC2 again with GET
// TRANSACTION PROVE); a right one ends it. A new 8070 replaces an unfinished session. Any
// command other than a chained 80FA breaks an unfinished MAC chain.
//
// Not thread-safe: one terminal talks to its PSAM.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "citycard/protocol/apdu.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/crypto.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/purse.h"

namespace citycard::devices {

class Psam {
 public:
  static constexpr std::uint8_t kTerminalIdSfi = 0x16;
  static constexpr std::uint16_t kApplicationFid = 0x8011;
  static constexpr std::uint8_t kMacLastBlock = 0x05;
  static constexpr std::uint8_t kMacMoreBlocks = 0x07;
  // Longest input a chained 80FA accepts (about 16,000 batch records); over it the chain is
  // dropped and the last block answers 6700.
  static constexpr std::size_t kMacInputBytesMax = 64 * 1024;

  explicit Psam(const protocol::PsamImage& image);

  // One C-APDU in, one R-APDU out. Never fails: bad input is answered with a status word.
  Bytes process(ByteView capdu);
  // Power-off: selection, MAC1 session and MAC chain are lost; the sequence is kept.
  void reset();

  const protocol::TerminalId& terminal_id() const { return terminal_id_; }
  // The sequence number the next 8070 will use.
  std::uint32_t next_sequence() const { return next_sequence_; }

 private:
  struct Mac2Session {
    protocol::crypto::SessionKey sespk;
    std::uint32_t amount_fen;
  };

  protocol::Response dispatch(const protocol::Command& c, Bytes chain);
  protocol::Response select(const protocol::Command& c);
  protocol::Response read_binary(const protocol::Command& c) const;
  protocol::Response mac1_for_purchase(const protocol::Command& c);
  protocol::Response verify_mac2(const protocol::Command& c);
  protocol::Response general_mac(const protocol::Command& c, Bytes chain);

  protocol::TerminalId terminal_id_;
  std::uint8_t key_version_;
  protocol::crypto::Key16 purchase_master_;
  protocol::crypto::Key16 batch_key_;
  std::uint32_t next_sequence_;

  bool selected_ = false;
  std::optional<Mac2Session> mac2_session_;
  Bytes mac_chain_;  // blocks of an unfinished 80FA chain
};

}  // namespace citycard::devices
