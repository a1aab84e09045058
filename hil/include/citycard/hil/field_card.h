// Cards that a simulated RF field (the software PN532's) can hold: how they answer
// anticollision (UID, ATQA, SAK, ATS) and what they do with the frames a reader sends.
//
// Two kinds, as a PN532 sees them through InDataExchange:
// - ISO-DEP (ISO 14443-4, SAK bit 0x20): a C-APDU in, an R-APDU out. Any object with
//   `Bytes process(ByteView)` is one: devices::CpuCard, devices::Psam.
// - MIFARE Classic (SAK 08): the MIFARE command bytes the PN532 carries (PN532.md), one
//   command in, one answer out. The answer convention, which an M1 card model implements:
//     60/61 blk key(6) uid(4)   AUTH with key A/B: a non-empty answer = authenticated,
//                               empty = refused (the card then halts, as a real one does)
//     30 blk                    READ: the 16 bytes of the block; anything else = NAK
//     A0 blk data(16)           WRITE                       } kMifareAck (0x0A) = done;
//     C0/C1 blk value(4)        DECREMENT / INCREMENT       } any other answer = NAK
//     C2 blk value(4)           RESTORE                     }
//     B0 blk                    TRANSFER                    }
//   The PN532 turns a refused AUTH into status 0x14 and a NAK or silence into status 0x01.
//
// Threads: a card in a SoftPn532's field is driven on the emulator's thread, under its field
// lock; see soft_pn532.h for when other threads may look at it.
#pragma once

#include <array>
#include <concepts>
#include <cstdint>
#include <memory>
#include <string>

#include "citycard/protocol/bytes.h"

namespace citycard::hil {

inline constexpr std::uint8_t kMifareAck = 0x0A;
inline constexpr std::uint8_t kSakIsoDep = 0x20;
inline constexpr std::uint8_t kSakMifareClassic1k = 0x08;

// What a card answers during ISO 14443-3/-4 activation.
struct CardIdentity {
  Bytes uid;  // 4, 7 or 10 bytes
  std::array<std::uint8_t, 2> atqa{0x00,
                                   0x04};  // SENS_RES as the PN532 reports it (nfc-list order)
  std::uint8_t sak = kSakIsoDep;
  Bytes ats;  // without its length byte TL; only for ISO-DEP cards (SAK bit 0x20)

  bool iso_dep() const { return (sak & kSakIsoDep) != 0; }
  std::string to_string() const;  // "uid 01020304 atqa 0004 sak 20 ats 788070..."
};

// A typical Chinese CPU card (FM1208-like): ATQA 0008, SAK 20, ATS with FSCI 8 (256-byte
// frames), FWI 7, CID supported.
CardIdentity cpu_card_identity(ByteView uid);
// A MIFARE Classic 1K (FM11RF08-like): ATQA 0004, SAK 08, no ATS.
CardIdentity m1_card_identity(ByteView uid);

class FieldCard {
 public:
  enum class Kind : std::uint8_t { kIsoDep, kMifareClassic };

  virtual ~FieldCard();
  virtual Kind kind() const = 0;
  virtual const CardIdentity& identity() const = 0;
  // One exchange: a C-APDU for kIsoDep, a MIFARE command for kMifareClassic (see above).
  virtual Bytes transceive(ByteView frame) = 0;
  // The card lost power (left the field, or the field went off): volatile state is gone.
  virtual void power_off() = 0;
};

template <class Card>
concept ProcessesBytes = requires(Card& c, ByteView in) {
  { c.process(in) } -> std::convertible_to<Bytes>;
};

namespace detail {

// Wraps a card model; calls its reset() on power-off when it has one. Owns the model or not.
template <class Card, FieldCard::Kind kKind>
class ProcessingFieldCard final : public FieldCard {
 public:
  ProcessingFieldCard(Card& card, CardIdentity identity)
      : card_(&card), identity_(std::move(identity)) {}
  ProcessingFieldCard(std::unique_ptr<Card> card, CardIdentity identity)
      : owned_(std::move(card)), card_(owned_.get()), identity_(std::move(identity)) {}

  Kind kind() const override { return kKind; }
  const CardIdentity& identity() const override { return identity_; }
  Bytes transceive(ByteView frame) override { return card_->process(frame); }
  void power_off() override {
    if constexpr (requires(Card & c) { c.reset(); }) card_->reset();
  }

 private:
  std::unique_ptr<Card> owned_;
  Card* card_;
  CardIdentity identity_;
};

}  // namespace detail

// An ISO-DEP card over a model that the caller owns. It must stay alive while it is in a field
// and until that SoftPn532 has stopped (a reader closing, or the field going off, powers the
// cards down): declare the model before the emulator, or remove() it before it dies.
template <ProcessesBytes Card>
std::shared_ptr<FieldCard> iso_dep_card(Card& card, CardIdentity identity) {
  return std::make_shared<detail::ProcessingFieldCard<Card, FieldCard::Kind::kIsoDep>>(
      card, std::move(identity));
}
template <ProcessesBytes Card>
std::shared_ptr<FieldCard> iso_dep_card(std::unique_ptr<Card> card, CardIdentity identity) {
  return std::make_shared<detail::ProcessingFieldCard<Card, FieldCard::Kind::kIsoDep>>(
      std::move(card), std::move(identity));
}

// A MIFARE Classic card over a model speaking the command convention above (lifetime: as
// iso_dep_card).
template <ProcessesBytes Card>
std::shared_ptr<FieldCard> mifare_card(Card& card, CardIdentity identity) {
  return std::make_shared<detail::ProcessingFieldCard<Card, FieldCard::Kind::kMifareClassic>>(
      card, std::move(identity));
}
template <ProcessesBytes Card>
std::shared_ptr<FieldCard> mifare_card(std::unique_ptr<Card> card, CardIdentity identity) {
  return std::make_shared<detail::ProcessingFieldCard<Card, FieldCard::Kind::kMifareClassic>>(
      std::move(card), std::move(identity));
}

}  // namespace citycard::hil
