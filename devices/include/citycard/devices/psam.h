// A PSAM (purchase secure access module) as installed in one terminal, personalised by a
// PsamImage. It holds the issuer's purchase master key, the application-maintenance master
// and the terminal's batch-signing key; the terminal never sees any of them.
//
// Commands answered; anything else answers 6D00 (INS) or 6E00 (CLA):
//   00 A4 00 00 02 DF     SELECT an application DF: 8011 (JT/T 978) or 1001 (CJ/T 166); any
//                         other FID 6A82. Both DFs use the same issuer keys: the simulator
//                         has one issuer for both families.
//   00 B0 96 00 06        READ BINARY of file 0x16 in the MF: the terminal id (6 bytes).
//                         Readable with or without a DF selected, as terminals read it at
//                         power-on before selecting.
//   80 70 00 00 24        MAC1 for purchase -> terminal seq (4) MAC1 (4)
//   80 72 00 00 04        verify MAC2 -> 9000 or 9302 (needs a preceding 8070, else 6985)
//   80 1A usage ver 10    init key diversification: card serial (8) | group data (8). The
//                         usage codes below are OUR reading; the key version must be the
//                         PSAM's (else 6A88). The diversified key serves the 80FA chain that
//                         directly follows; any other command drops it.
//   80 FA P1 00 Lc        MAC. After 801A: with the diversified key, the data starting with the
//                         initial value (8 bytes for 3DES, 16 for SM4), as
//                         crypto::secure_messaging_mac computes it (the blacklist lock).
//                         Otherwise: with the batch key, no initial value ->
//                         crypto::tdes_mac(batch_key, all blocks). P1 07 = a block with more to
//                         follow (answers 9000, no data), P1 05 = the last or only block -> MAC
//                         (4). The P1 codes are our reading, not confirmed by a public source.
//
// MAC1: the card's purchase key is diversified from the purchase master by the card
// application serial (crypto::diversify, one level, as protocol::derive_card_keys does). The
// 8 bytes of diversification data in the 8070 input (JT/T 978: the first 8 bytes of file
// 0x15; CJ/T 166: city code | FF 00 ..) are accepted and carried but do not enter the key: our
// key hierarchy has no second (city/group) level. The same holds for 801A's group data.
// Status words: as the card (6700 wrong length or malformed, 6A86 wrong P1/P2, 6985 before a
// DF is selected); 9403 for a key version the PSAM does not hold; 6A80 for an unknown
// algorithm id or transaction type; 6985 when the terminal sequence is exhausted.
// A wrong MAC2 leaves the MAC1 session in place (the terminal may fetch MAC2 again with GET
// TRANSACTION PROVE); a right one ends it. A new 8070 replaces an unfinished session. Any
// command other than a chained 80FA breaks an unfinished MAC chain.
//
// Timing: each command reports its processing time from a PsamProfile (which must outlive the
// PSAM), plus an EEPROM write for the sequence counter after each 8070; DirectLink adds the
// ISO 7816 T=0 transfer time.
//
// Not thread-safe: one terminal talks to its PSAM.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "citycard/devices/card_profile.h"
#include "citycard/devices/timing.h"
#include "citycard/protocol/apdu.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/crypto.h"
#include "citycard/protocol/des.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/purse.h"

namespace citycard::devices {

class Psam {
 public:
  static constexpr std::uint8_t kTerminalIdSfi = 0x16;
  static constexpr std::uint16_t kApplicationFid = 0x8011;  // JT/T 978
  static constexpr std::uint16_t kCjt166ApplicationFid = 0x1001;
  static constexpr std::uint8_t kMacLastBlock = 0x05;
  static constexpr std::uint8_t kMacMoreBlocks = 0x07;
  // 801A key usage (P1), OUR reading: the application maintenance key of 3DES cards, and of
  // SM4 cards (a real PSAM keeps a key entry per algorithm).
  static constexpr std::uint8_t kUsageMaintenance = 0x28;
  static constexpr std::uint8_t kUsageMaintenanceSm4 = 0x68;
  // Longest input a chained 80FA accepts (about 16,000 batch records); over it the chain is
  // dropped and the last block answers 6700.
  static constexpr std::size_t kMacInputBytesMax = 64 * 1024;

  explicit Psam(const protocol::PsamImage& image,
                const PsamProfile& profile = PsamProfile::standard());

  // One C-APDU in, one R-APDU out. Never fails: bad input is answered with a status word.
  Bytes process(ByteView capdu);
  // Power-off: selection, MAC1 session, diversified key and MAC chain are lost; the sequence
  // is kept.
  void reset();

  LinkTiming link_timing() const {
    return LinkTiming{LinkTiming::Interface::kContact, {}, profile_->contact};
  }
  std::int64_t last_processing_us() const { return last_processing_us_; }

  const protocol::TerminalId& terminal_id() const { return terminal_id_; }
  // The sequence number the next 8070 will use.
  std::uint32_t next_sequence() const { return next_sequence_; }

 private:
  struct Mac2Session {
    protocol::Mac4 expected_mac2;  // computed with MAC1, under the same session key
  };
  struct DiversifiedKey {
    protocol::crypto::Algorithm algorithm;
    protocol::crypto::Key16 key;
  };

  protocol::Response dispatch(const protocol::Command& c, Bytes chain,
                              std::optional<DiversifiedKey> key);
  protocol::Response select(const protocol::Command& c);
  protocol::Response read_binary(const protocol::Command& c);
  protocol::Response mac1_for_purchase(const protocol::Command& c);
  protocol::Response verify_mac2(const protocol::Command& c);
  protocol::Response init_diversification(const protocol::Command& c);
  protocol::Response general_mac(const protocol::Command& c, Bytes chain,
                                 std::optional<DiversifiedKey> key);
  protocol::Response refuse(std::uint16_t sw);
  protocol::Response done(Bytes data, std::int64_t processing_us);

  const PsamProfile* profile_;
  protocol::TerminalId terminal_id_;
  std::uint8_t key_version_;
  protocol::crypto::Key16 purchase_master_;
  protocol::crypto::TdesKey purchase_master_3des_;  // scheduled once: every 8070 uses it
  protocol::crypto::Key16 maintenance_master_;
  protocol::crypto::Key16 batch_key_;
  std::uint32_t next_sequence_;

  bool selected_ = false;
  std::optional<Mac2Session> mac2_session_;
  std::optional<DiversifiedKey> diversified_;  // from 801A, for the next 80FA chain
  Bytes mac_chain_;                            // blocks of an unfinished 80FA chain
  std::int64_t last_processing_us_ = 0;
};

}  // namespace citycard::devices
