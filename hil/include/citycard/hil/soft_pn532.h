// A software PN532 on a pseudo-terminal: libnfc's pn532_uart driver (and the stock tools
// nfc-list, nfc-poll, nfc-emulate-forum-tag4) talk to it as to a board on a serial port
// (PN532.md). Behind it is a simulated RF field:
// - initiator mode: the field holds zero or more simulated cards (field_card.h): ISO-DEP purse
//   cards answering APDUs, MIFARE Classic cards answering MIFARE commands;
// - target mode: libnfc is the card, and the RF side is a simulated terminal that activates
//   the emulated card and sends it C-APDUs (terminal_* below, or TerminalLink).
//
// The chip: host-link frames with ACK, NACK, checksums, resynchronisation, partial-frame
// timeout, wake-up from power-down; a new frame cancels a pending command and an ACK from the
// host aborts it; 31 commands (listed in hil/README.md; src/pn532_chip.cpp), a
// register file, MI chaining of long replies. Fault knobs: reply latency, and tearing a card
// out of the field at an exact exchange.
//
// Threads: the emulator runs on its own thread from start() until stop() (or destruction).
// Every other member function may be called from any thread; they are serialised with the
// emulator thread by one lock. Cards in the field are driven on the emulator thread under that
// lock: another thread may look at a card model only inside with_field_locked(), or after
// remove() returned it.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "citycard/devices/card_link.h"
#include "citycard/hil/field_card.h"
#include "citycard/hil/pn532_frame.h"
#include "citycard/hil/rate_limited_log.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"

namespace citycard::hil {

struct Pn532Latency {
  std::int64_t reply_us = 0;     // before every reply (never before the ACK)
  std::int64_t exchange_us = 0;  // added before replies that carry a card's answer (air time)
};

struct SoftPn532Options {
  // A symlink created here to the pty slave (/dev/pts/N) and removed at stop, so other tools
  // can use a fixed path. Empty: none. No ':' in it (libnfc's connstring separator); an
  // existing symlink is replaced, any other existing file is an error.
  std::string link_path;
  std::size_t field_cards_max = 8;
  // Longest InDataExchange reply sent in one frame; longer ones are chained with the MI bit,
  // which libnfc follows. A real PN532 holds 262 bytes; a small value exercises chaining.
  std::size_t exchange_chunk_bytes = 262;
  Pn532Latency latency;
  // Log lines (one per event worth telling; every frame when log_frames) go through a
  // RateLimitedLog. Empty sink: no logging.
  RateLimitedLog::Sink log_sink;
  double log_lines_per_s = 20.0;
  std::uint32_t log_burst_lines = 40;
  bool log_frames = false;
};

using CardId = std::uint64_t;

struct FieldEntry {
  CardId id = 0;
  CardIdentity identity;
  FieldCard::Kind kind = FieldCard::Kind::kIsoDep;
  std::uint64_t exchanges = 0;  // InDataExchange frames this card answered since insertion
  bool halted = false;
  bool selected = false;
};

enum class TearWhen : std::uint8_t {
  kBeforeCommand,  // the card leaves before it sees the command
  kAfterCommand,   // the card acts on the command; its answer is lost
};

// What the emulator has done, for tests to synchronise on (wait_for) and for the bench.
struct Pn532Counters {
  std::array<std::uint64_t, 256> commands{};  // by PN532 command code
  std::uint64_t replies = 0;
  std::uint64_t error_frames = 0;  // syntax errors answered with the error frame
  std::uint64_t aborted = 0;       // an ACK from the host ended a pending command
  std::uint64_t cancelled = 0;     // a new command arrived while one was pending
  std::uint64_t nacks_answered = 0;
  std::uint64_t wakeups = 0;    // power-down ended by a byte on the line
  std::uint64_t exchanges = 0;  // InDataExchange frames delivered to a card
  std::uint64_t presence_checks = 0;
  std::uint64_t tears = 0;
  std::uint64_t terminal_apdus = 0;  // C-APDUs the simulated terminal got answered
  std::uint64_t output_dropped_bytes = 0;
  pn532::DecoderCounters decoder;

  std::uint64_t command(std::uint8_t code) const { return commands[code]; }
};

// What libnfc asked the PN532 to present in target mode (TgInitAsTarget).
struct EmulatedTarget {
  Bytes uid;  // 4 bytes, the first fixed to 08 by the PN532
  std::array<std::uint8_t, 2> atqa{};
  std::uint8_t sak = 0;
  Bytes historical_bytes;
};

class SoftPn532 {
 public:
  static constexpr std::int64_t kTerminalTimeoutMsDefault = 2'000;

  // Opens a pty, puts its slave in raw mode (and keeps a slave fd open, so reads on the
  // master never fail with EIO between clients) and starts the emulator thread.
  static Result<std::unique_ptr<SoftPn532>> start(SoftPn532Options options = {});
  ~SoftPn532();
  SoftPn532(const SoftPn532&) = delete;
  SoftPn532& operator=(const SoftPn532&) = delete;

  // Stops the thread and closes the pty; the symlink goes. Idempotent.
  void stop();

  const std::string& pty_path() const;  // /dev/pts/N
  // "pn532_uart:<link_path or pty_path>", for nfc_open or LIBNFC_DEVICE.
  std::string connstring() const;

  // --- the RF field (initiator mode) ---
  // kTooLarge when the field already holds field_cards_max cards.
  Result<CardId> insert(std::shared_ptr<FieldCard> card);
  // Takes a card out of the field (it loses power); nullptr when it is not there.
  std::shared_ptr<FieldCard> remove(CardId id);
  void remove_all();
  std::vector<FieldEntry> cards() const;
  // Exchange `nth` (0-based, counted from this call: InDataExchange frames to this card, MI
  // continuations not counted) takes the card out of the field, before or after the card acts
  // on it; the reader sees an RF timeout either way. The card is removed as by remove(), so a
  // test puts it back with insert(). kNotFound when the card is not in the field.
  Status tear_at(CardId id, std::uint64_t nth, TearWhen when);
  // Runs `fn` while the emulator is kept from touching any card.
  void with_field_locked(const std::function<void()>& fn);

  void set_latency(Pn532Latency latency);

  // --- the simulated terminal (target mode) ---
  // Brings the terminal's field up: waits until libnfc has the PN532 in target mode
  // (TgInitAsTarget) and the emulated card is activated. kTimeout when that does not happen in
  // time; kUnavailable when the emulator stops.
  Result<EmulatedTarget> terminal_activate(std::int64_t timeout_ms = kTerminalTimeoutMsDefault);
  // Sends one C-APDU to the emulated card and waits for its R-APDU. kTorn when the card is not
  // activated or is released meanwhile; kTimeout when libnfc does not answer in time.
  Result<Bytes> terminal_transceive(ByteView capdu,
                                    std::int64_t timeout_ms = kTerminalTimeoutMsDefault);
  // The terminal's field goes away: libnfc's next (or pending) TgGetData reports the release.
  void terminal_release();

  // --- observation ---
  Pn532Counters counters() const;
  // Blocks until `pred` holds for the counters (checked after every event the emulator
  // handles) or the timeout passes; returns whether it holds.
  bool wait_for(const std::function<bool(const Pn532Counters&)>& pred,
                std::int64_t timeout_ms) const;

  struct Impl;

 private:
  explicit SoftPn532(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A devices::CardLink from the simulated terminal to the card libnfc emulates in target mode,
// so terminal code of devices/ (purchase engine, validators) can run against it unchanged.
// The terminal must have been activated. Single-threaded, like every CardLink.
class TerminalLink final : public devices::CardLink {
 public:
  explicit TerminalLink(SoftPn532& pn532,
                        std::int64_t timeout_ms = SoftPn532::kTerminalTimeoutMsDefault)
      : pn532_(pn532), timeout_ms_(timeout_ms) {}
  Result<protocol::Response> transceive(const protocol::Command& command) override;

 private:
  SoftPn532& pn532_;
  std::int64_t timeout_ms_;
};

}  // namespace citycard::hil
