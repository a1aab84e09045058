// The terminal's view of a card (or a SAM) in its field: one command APDU in, one response
// APDU out. Terminals drive cards only through this interface, so the same terminal code runs
// against an in-process card model, a card behind a libnfc reader, or a link that tears.
//
// Time: a link may model how long its exchanges take (DirectLink does, from the card's
// profile and the air interface; see timing.h). elapsed_us() is the running total; a terminal
// reads it before and after a transaction to know the transaction's duration. Links that do
// not model time report 0.
//
// Single-threaded: a link is used by one terminal on one thread.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>

#include "citycard/devices/timing.h"
#include "citycard/protocol/apdu.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"
#include "citycard/sim/rng.h"

namespace citycard::devices {

class CardLink {
 public:
  virtual ~CardLink();
  // The card's answer, or an error when no answer came: Errc::kTorn when the card left the
  // field or lost power (the command may or may not have taken effect on the card),
  // Errc::kMalformed when what came back was not an R-APDU.
  virtual Result<protocol::Response> transceive(const protocol::Command& command) = 0;
  // Simulated microseconds the exchanges on this link have taken so far.
  virtual std::int64_t elapsed_us() const { return 0; }
  // Power fails during the card's next command after `after_page_writes` EEPROM page writes
  // (see CpuCard::arm_power_cut). False when the card behind the link cannot be cut so.
  virtual bool arm_power_cut(std::uint32_t after_page_writes) {
    (void)after_page_writes;
    return false;
  }
};

// Sees every completed exchange, for traces: the command, the response (its status word
// included) and the exchange's simulated duration. Must not call back into the link.
// Callables taking (command, response, duration_us) or, as before durations existed,
// (command, response) both convert.
class ApduTrace {
 public:
  using Fn = std::function<void(const protocol::Command&, const protocol::Response&,
                                std::int64_t duration_us)>;
  ApduTrace() = default;
  template <class F>
  requires std::invocable<F&, const protocol::Command&, const protocol::Response&, std::int64_t>
  ApduTrace(F f) : fn_(std::move(f)) {}  // NOLINT: implicit, like std::function
  template <class F>
  requires(std::invocable<F&, const protocol::Command&, const protocol::Response&> &&
           !std::invocable<F&, const protocol::Command&, const protocol::Response&,
                           std::int64_t>) ApduTrace(F f)  // NOLINT
      : fn_([f = std::move(f)](const protocol::Command& c, const protocol::Response& r,
                               std::int64_t) mutable { f(c, r); }) {}

  explicit operator bool() const { return static_cast<bool>(fn_); }
  void operator()(const protocol::Command& c, const protocol::Response& r,
                  std::int64_t duration_us) const {
    fn_(c, r, duration_us);
  }
  // For links that do not model time.
  void operator()(const protocol::Command& c, const protocol::Response& r) const { fn_(c, r, 0); }

 private:
  Fn fn_;
};

// A link straight to an in-process card model: any object with `Bytes process(ByteView)`
// (CpuCard, Psam). Commands and responses go through their byte encodings both ways, so the
// byte path a real reader uses is exercised. An empty answer means the card went silent (lost
// power) and is reported as Errc::kTorn.
//
// Timing: when the card tells its air interface (`link_timing()`) and how long it worked on
// the last command (`last_processing_us()`), each exchange is given a duration (timing.h). A
// DirectLink stands for one presence of the card in the field: its first exchange with a
// contactless card also pays for the card's activation (REQA ... ATS).
//
// Does not own the card, which must outlive it.
class DirectLink final : public CardLink {
 public:
  template <class Card>
  requires requires(Card& c, ByteView capdu) {
    { c.process(capdu) } -> std::convertible_to<Bytes>;
  }
  explicit DirectLink(Card& card, ApduTrace trace = {}, ReaderTiming reader = {})
      : card_(&card),
        process_(&process_thunk<Card>),
        timing_(&timing_thunk<Card>),
        cut_(&cut_thunk<Card>),
        trace_(std::move(trace)),
        reader_(reader) {}
  template <class Card>
  DirectLink(const Card&&, ApduTrace = {}, ReaderTiming = {}) = delete;  // would dangle

  Result<protocol::Response> transceive(const protocol::Command& command) override;
  std::int64_t elapsed_us() const override { return elapsed_us_; }
  bool arm_power_cut(std::uint32_t after_page_writes) override {
    return cut_(card_, after_page_writes);
  }

  void set_trace(ApduTrace trace) { trace_ = std::move(trace); }
  // Exchanges that produced a response.
  std::uint64_t exchanges() const { return exchanges_; }
  std::int64_t last_exchange_us() const { return last_exchange_us_; }

 private:
  struct CardTiming {
    bool known = false;
    LinkTiming link;
    std::int64_t processing_us = 0;
  };
  template <class Card>
  static Bytes process_thunk(void* card, ByteView capdu) {
    return static_cast<Card*>(card)->process(capdu);
  }
  template <class Card>
  static CardTiming timing_thunk(void* card) {
    if constexpr (requires(Card & c) {
                    { c.link_timing() } -> std::convertible_to<LinkTiming>;
                    { c.last_processing_us() } -> std::convertible_to<std::int64_t>;
                  }) {
      Card& c = *static_cast<Card*>(card);
      return CardTiming{true, c.link_timing(), c.last_processing_us()};
    } else {
      return CardTiming{};
    }
  }
  template <class Card>
  static bool cut_thunk(void* card, std::uint32_t after) {
    if constexpr (requires(Card & c, std::uint32_t n) {
                    { c.arm_power_cut(n) } -> std::convertible_to<bool>;
                  }) {
      return static_cast<Card*>(card)->arm_power_cut(after);
    } else {
      (void)card;
      (void)after;
      return false;
    }
  }
  std::int64_t duration_us(const CardTiming& t, std::size_t capdu_bytes, std::size_t data_in_bytes,
                           std::size_t rapdu_bytes);

  void* card_;
  Bytes (*process_)(void*, ByteView);
  CardTiming (*timing_)(void*);
  bool (*cut_)(void*, std::uint32_t);
  ApduTrace trace_;
  ReaderTiming reader_;
  bool activated_ = false;
  std::uint64_t exchanges_ = 0;
  std::int64_t elapsed_us_ = 0;
  std::int64_t last_exchange_us_ = 0;
};

// A scripted tear over another link, for tests and for scenarios that pull a card away at an
// exact step. Exchange k (0-based, counted on this link) fails with Errc::kTorn: before the
// card sees the command, after the card has processed it and the answer is lost, or during it
// (power fails after a given number of the card's EEPROM page writes, CardLink::arm_power_cut;
// a link that cannot do that tears after the command). From then on the card is out of the
// field and every exchange fails with kTorn. Does not own the inner link.
class TearingLink final : public CardLink {
 public:
  enum class When : std::uint8_t { kBeforeCommand, kAfterCommand, kDuringCommand };

  explicit TearingLink(CardLink& inner) : inner_(inner) {}

  // `page_writes` is used by kDuringCommand only.
  void tear_at(std::uint64_t exchange, When when, std::uint32_t page_writes = 0) {
    tear_ = Tear{exchange, when, page_writes};
  }
  Result<protocol::Response> transceive(const protocol::Command& command) override;
  std::int64_t elapsed_us() const override { return inner_.elapsed_us(); }

  bool torn() const { return torn_; }
  std::uint64_t exchanges() const { return exchanges_; }

 private:
  struct Tear {
    std::uint64_t exchange;
    When when;
    std::uint32_t page_writes;
  };
  CardLink& inner_;
  std::optional<Tear> tear_;
  bool torn_ = false;
  std::uint64_t exchanges_ = 0;
};

// The fault knobs of a randomly tearing card link.
struct TearingOptions {
  // Chance, per exchange, that the card leaves the field at it.
  double tear_probability = 0.0;
  // Given a tear: the chance that the card had processed the command (its answer lost), and
  // that power failed during the command (at a random one of its first eight page writes);
  // the rest tear before the card sees the command.
  double tear_after_command_probability = 0.4;
  double tear_during_command_probability = 0.2;
};

// Tears at random, per TearingOptions, from a seeded generator: the fault plan's tearing.
// After a tear the card stays out of the field (a new presence is a new link). Does not own
// the inner link.
class RandomTearingLink final : public CardLink {
 public:
  RandomTearingLink(CardLink& inner, TearingOptions options, sim::Rng rng);

  Result<protocol::Response> transceive(const protocol::Command& command) override;
  std::int64_t elapsed_us() const override { return inner_.elapsed_us(); }

  bool torn() const { return torn_; }
  std::optional<TearingLink::When> tear_kind() const { return kind_; }
  const TearingOptions& options() const { return options_; }

 private:
  CardLink& inner_;
  TearingOptions options_;
  sim::Rng rng_;
  bool torn_ = false;
  std::optional<TearingLink::When> kind_;
};

}  // namespace citycard::devices
