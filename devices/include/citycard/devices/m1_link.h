// The terminal's view of a MIFARE Classic card in its field, at the PN532 InDataExchange level:
// MIFARE command bytes in, the reader's answer (PN532 status byte, then data) out. The M1 purse
// engine drives M1 cards only through this interface, so the same code runs against the
// in-process M1Card, a card on a libnfc reader, or a link that tears.
//
// Single-threaded: a link is used by one terminal on one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "citycard/devices/card_link.h"
#include "citycard/devices/m1_card.h"
#include "citycard/devices/timing.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/mifare.h"
#include "citycard/protocol/status.h"

namespace citycard::devices {

class M1Link {
 public:
  virtual ~M1Link();
  // The UID the reader learned when it selected the card.
  virtual protocol::m1::Uid4 uid() const = 0;
  // The answer (status byte first), or Errc::kTorn when the card left the field or lost power
  // (the command may or may not have taken effect).
  virtual Result<Bytes> transceive(ByteView command) = 0;
  // Simulated microseconds the exchanges on this link have taken so far.
  virtual std::int64_t elapsed_us() const { return 0; }
  // See M1Card::arm_power_cut. False when the card cannot be cut so.
  virtual bool arm_power_cut(std::uint32_t after_writes) {
    (void)after_writes;
    return false;
  }
};

// Sees every completed exchange: command, answer, simulated duration.
using M1Trace = std::function<void(ByteView command, ByteView answer, std::int64_t duration_us)>;

// A link straight to an in-process M1Card, playing the PN532: the card's answer becomes the
// reader's (status 00 and the data, 14 for a refused AUTH, 01 for a NAK or a halted card's
// silence); a card that lost power is kTorn. Timed by timing::mifare_exchange_us; the first
// exchange pays for the card's ISO 14443-3 activation. Does not own the card, which must
// outlive it.
class DirectM1Link final : public M1Link {
 public:
  explicit DirectM1Link(M1Card& card, M1Trace trace = {}, ReaderTiming reader = {})
      : card_(card), trace_(std::move(trace)), reader_(reader) {}
  DirectM1Link(const M1Card&&, M1Trace = {}, ReaderTiming = {}) = delete;  // would dangle

  protocol::m1::Uid4 uid() const override { return card_.uid(); }
  Result<Bytes> transceive(ByteView command) override;
  std::int64_t elapsed_us() const override { return elapsed_us_; }
  bool arm_power_cut(std::uint32_t after_writes) override {
    return card_.arm_power_cut(after_writes);
  }
  std::uint64_t exchanges() const { return exchanges_; }

 private:
  M1Card& card_;
  M1Trace trace_;
  ReaderTiming reader_;
  bool activated_ = false;
  std::uint64_t exchanges_ = 0;
  std::int64_t elapsed_us_ = 0;
};

// A scripted tear over another M1 link, as TearingLink for APDUs: exchange k fails with kTorn
// before the card sees it, after the card acted on it, or during it (a block it writes is torn
// half-written: CardLink's kDuringCommand with M1Card::arm_power_cut(0)). From then on every
// exchange fails. Does not own the inner link.
class TearingM1Link final : public M1Link {
 public:
  using When = TearingLink::When;
  explicit TearingM1Link(M1Link& inner) : inner_(inner) {}

  void tear_at(std::uint64_t exchange, When when) { tear_ = Tear{exchange, when}; }
  protocol::m1::Uid4 uid() const override { return inner_.uid(); }
  Result<Bytes> transceive(ByteView command) override;
  std::int64_t elapsed_us() const override { return inner_.elapsed_us(); }
  bool torn() const { return torn_; }
  std::uint64_t exchanges() const { return exchanges_; }

 private:
  struct Tear {
    std::uint64_t exchange;
    When when;
  };
  M1Link& inner_;
  std::optional<Tear> tear_;
  bool torn_ = false;
  std::uint64_t exchanges_ = 0;
};

}  // namespace citycard::devices
