// The terminal's view of a card (or a SAM) in its field: one command APDU in, one response
// APDU out. Terminals drive cards only through this interface, so the same terminal code runs
// against an in-process card model, a card behind a libnfc reader, or a link that tears.
//
// Single-threaded: a link is used by one terminal on one thread.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>

#include "citycard/protocol/apdu.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"

namespace citycard::devices {

class CardLink {
 public:
  virtual ~CardLink();
  // The card's answer, or an error when no answer came: Errc::kTorn when the card left the
  // field (the command may or may not have taken effect on the card), Errc::kMalformed when
  // what came back was not an R-APDU.
  virtual Result<protocol::Response> transceive(const protocol::Command& command) = 0;
};

// Sees every completed exchange, for traces. Must not call back into the link.
using ApduTrace = std::function<void(const protocol::Command&, const protocol::Response&)>;

// A link straight to an in-process card model: any object with `Bytes process(ByteView)`
// (CpuCard, Psam). Commands and responses go through their byte encodings both ways, so the
// byte path a real reader uses is exercised. Does not own the card, which must outlive it.
class DirectLink final : public CardLink {
 public:
  template <class Card>
  requires requires(Card& c, ByteView capdu) {
    { c.process(capdu) } -> std::convertible_to<Bytes>;
  }
  explicit DirectLink(Card& card, ApduTrace trace = {})
      : card_(&card), process_(&process_thunk<Card>), trace_(std::move(trace)) {}
  template <class Card>
  DirectLink(const Card&&, ApduTrace = {}) = delete;  // a temporary card would dangle

  Result<protocol::Response> transceive(const protocol::Command& command) override;

  void set_trace(ApduTrace trace) { trace_ = std::move(trace); }
  // Exchanges that produced a response.
  std::uint64_t exchanges() const { return exchanges_; }

 private:
  template <class Card>
  static Bytes process_thunk(void* card, ByteView capdu) {
    return static_cast<Card*>(card)->process(capdu);
  }

  void* card_;
  Bytes (*process_)(void*, ByteView);
  ApduTrace trace_;
  std::uint64_t exchanges_ = 0;
};

// A scripted tear over another link, for tests and for scenarios that pull a card away at an
// exact step. Exchange k (0-based, counted on this link) fails with Errc::kTorn, either before
// the card sees the command or after the card has processed it and the answer is lost; from
// then on the card is out of the field and every exchange fails with kTorn. Does not own the
// inner link. Random tearing belongs to the fault plan, which can drive this link.
class TearingLink final : public CardLink {
 public:
  enum class When : std::uint8_t { kBeforeCommand, kAfterCommand };

  explicit TearingLink(CardLink& inner) : inner_(inner) {}

  void tear_at(std::uint64_t exchange, When when) { tear_ = Tear{exchange, when}; }
  Result<protocol::Response> transceive(const protocol::Command& command) override;

  bool torn() const { return torn_; }
  std::uint64_t exchanges() const { return exchanges_; }

 private:
  struct Tear {
    std::uint64_t exchange;
    When when;
  };
  CardLink& inner_;
  std::optional<Tear> tear_;
  bool torn_ = false;
  std::uint64_t exchanges_ = 0;
};

}  // namespace citycard::devices
