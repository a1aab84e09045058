// A CPU purse card: one electronic-purse (EP) application of the card's family (JT/T 978 or
// CJ/T 166 AID, the PBOC purse command set both share), as personalised by a CardImage.
//
// Commands answered (STANDARDS.md); anything else answers 6D00 (INS) or 6E00 (CLA):
//   00 A4 04 00 Lc AID    SELECT the purse application by name -> FCI; unknown name 6A82
//   00 A4 00 00 02 3F00   SELECT the MF (leaves the application)
//   00 B0 95 off Le       READ BINARY of file 0x15 (30 bytes, layout in cpu_card.cpp)
//   00 B2 rec C4 Le       READ RECORD of the 0x18 cyclic log, record 1 = newest
//   80 5C 00 02 04        GET BALANCE
//   80 50 01 02 0B        INITIALIZE FOR PURCHASE (key index 01 only, else 9403)
//   80 54 01 00 0F        DEBIT FOR PURCHASE
//   80 5A 00 06 02 ctr    GET TRANSACTION PROVE of the last purchase
//
// Choices where the standards leave room (each is what a PBOC card is reported to do):
// - A malformed APDU (under 4 bytes, Lc not matching the bytes that follow) and a wrong Lc
//   answer 6700. Le is not checked: the card returns the whole field (T=1 style).
// - Checks run in the order CLA (6E00), INS (6D00), P1/P2 (6A86), Lc (6700), state, data.
// - Before the application is selected, purse commands answer 6985 and file reads 6A82 (the
//   MF has no such file).
// - A purchase session opened by INITIALIZE FOR PURCHASE lasts for exactly the next command:
//   any command other than DEBIT, and a DEBIT that fails (9302 included), ends it, so a DEBIT
//   without a fresh INITIALIZE answers 6986 and MAC1 cannot be guessed within one session.
// - A wrong MAC1 answers 9302 and changes no balance, counter, log or proof.
// - Overdraft: a purchase may take the balance to zero and the rest from the overdraft limit;
//   the overdraft in use is kept apart (the balance never goes negative), and INITIALIZE
//   answers the configured limit in its overdraft field.
// - GET TRANSACTION PROVE takes the counter of the purchase plus one (the card's counter
//   after it); a mismatch answers 9406 (MAC not available). The proof survives power-off.
// - The offline counter saturates: at FFFF, INITIALIZE FOR PURCHASE answers 6985.
//
// Every command's state change is atomic: a command computes its result first and commits
// with plain assignments, so a command that fails changes nothing.
//
// Memory: a card holds only fixed-size state (no heap), under 512 bytes (a test holds it there), so
// a city of millions of cards fits in memory. Not thread-safe; a card is in one field at a time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "citycard/protocol/apdu.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/crypto.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/purse.h"
#include "citycard/sim/rng.h"

namespace citycard::devices {

class CpuCard {
 public:
  static constexpr std::size_t kLogRecords = 10;
  static constexpr std::size_t kIssuerFileBytes = 30;  // file 0x15
  static constexpr std::uint8_t kPurchaseKeyIndex = 0x01;

  // `rng` is the card's own source of challenges; give each card a fork of the run's root
  // generator so one card's randoms do not depend on other cards' taps.
  CpuCard(const protocol::CardImage& image, sim::Rng rng);

  // One C-APDU in, one R-APDU (data + status word) out. Never fails: bad input is answered
  // with a status word.
  Bytes process(ByteView capdu);
  // The card left the field or lost power: the selection and any purchase session are gone;
  // everything a real card keeps in EEPROM (balance, counters, log, proof) stays.
  void reset();

  std::uint32_t balance_fen() const { return balance_fen_; }
  std::uint32_t overdraft_used_fen() const { return overdraft_used_fen_; }
  std::uint16_t offline_counter() const { return offline_counter_; }
  const protocol::Serial8& serial() const { return serial_; }
  // The 0x18 log, newest first, at most kLogRecords.
  std::vector<protocol::LogRecord> log() const;

 private:
  struct PurchaseSession {
    std::uint32_t amount_fen;
    protocol::TerminalId terminal;
    protocol::Random4 random;
  };
  struct Proof {
    std::uint16_t counter;  // offline counter the purchase used
    std::uint8_t type;
    protocol::Mac4 mac2;
    protocol::Mac4 tac;
  };

  protocol::Response dispatch(const protocol::Command& c);
  protocol::Response select(const protocol::Command& c);
  protocol::Response read_binary(const protocol::Command& c) const;
  protocol::Response read_record(const protocol::Command& c) const;
  protocol::Response get_balance(const protocol::Command& c) const;
  protocol::Response initialize_purchase(const protocol::Command& c);
  protocol::Response debit_purchase(const protocol::Command& c,
                                    const std::optional<PurchaseSession>& session);
  protocol::Response get_transaction_prove(const protocol::Command& c) const;
  Bytes issuer_file() const;
  std::uint32_t available_fen() const;

  // Personalisation; fixed for the card's life.
  protocol::Family family_;
  protocol::crypto::Algorithm algorithm_;
  std::uint8_t key_version_;
  protocol::Serial8 serial_;
  std::array<std::uint8_t, 8> issuer_data_;
  std::array<std::uint8_t, 4> valid_from_;
  std::array<std::uint8_t, 4> valid_to_;
  protocol::crypto::Key16 dpk_;
  protocol::crypto::Key16 dtk_;
  std::uint32_t overdraft_limit_fen_;

  // Non-volatile purse state.
  std::uint32_t balance_fen_;
  std::uint32_t overdraft_used_fen_ = 0;
  std::uint16_t offline_counter_ = 0;
  std::array<protocol::LogRecord, kLogRecords> log_{};
  std::uint8_t log_newest_ = 0;  // index of record 1 when log_count_ > 0
  std::uint8_t log_count_ = 0;
  std::optional<Proof> proof_;

  // Volatile state, lost on reset().
  bool selected_ = false;
  std::optional<PurchaseSession> session_;
  sim::Rng rng_;
};

}  // namespace citycard::devices
