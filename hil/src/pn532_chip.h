// The PN532's command processor behind the software PN532's host link: commands in (PD0..PDn
// of a D4 frame), replies out, with the register file, the RF field, the target-mode state
// and the one command that may be pending (waiting for a card, a terminal, or a C-APDU).
// It knows nothing of frames, ptys or threads: SoftPn532 calls it under its lock, on the
// emulator thread for commands and on callers' threads for the control API.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "citycard/hil/field_card.h"
#include "citycard/hil/soft_pn532.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/status.h"

namespace citycard::hil::detail {

struct ChipReply {
  enum class Kind : std::uint8_t { kData, kErrorFrame, kPending };
  Kind kind = Kind::kData;
  Bytes data;                // PD0..PDn of the reply, command code + 1 first
  bool card_answer = false;  // carries a card's answer: the exchange latency applies
};

class Pn532Chip {
 public:
  explicit Pn532Chip(const SoftPn532Options& options);

  // Power-down (PowerDown command; and LowVbat at power-on): the next byte on the line wakes
  // the chip and is lost, as on the real HSU.
  bool asleep() const { return asleep_; }
  void wake() { asleep_ = false; }

  // A new command. The caller has cancelled any pending one first.
  ChipReply execute(ByteView command, std::int64_t now_us);
  bool has_pending() const { return pending_.has_value(); }
  void cancel_pending();
  // Re-evaluates the pending command (a card came, a terminal moved, time passed): its reply
  // when it is ready, nothing while it still waits.
  std::optional<ChipReply> retry_pending(std::int64_t now_us);
  std::optional<std::int64_t> pending_deadline_us() const;

  // The field.
  Result<CardId> insert(std::shared_ptr<FieldCard> card);
  std::shared_ptr<FieldCard> remove(CardId id);
  void remove_all();
  std::vector<FieldEntry> cards() const;
  Status tear_at(CardId id, std::uint64_t nth, TearWhen when);

  // The simulated terminal.
  void terminal_enter() { terminal_present_ = true; }
  void terminal_leave();
  std::uint64_t activations() const { return activations_; }
  bool target_active() const { return phase_ == Phase::kActive; }
  const EmulatedTarget& target() const { return target_; }
  // Queues a C-APDU for the emulated card; returns its sequence number.
  std::uint64_t terminal_send(Bytes capdu);
  // The R-APDU to C-APDU `seq`, once libnfc has sent it.
  std::optional<Bytes> take_terminal_response(std::uint64_t seq);
  // Forgets C-APDU `seq` (the terminal gave up on it).
  void terminal_abandon(std::uint64_t seq);

  Pn532Counters& counters() { return counters_; }
  const Pn532Counters& counters() const { return counters_; }
  // Lines worth logging since the last call (tears, target-mode events...).
  std::vector<std::string> take_events();

 private:
  enum class Phase : std::uint8_t { kOff, kListening, kActive, kReleased };
  struct Slot {
    CardId id;
    std::shared_ptr<FieldCard> card;
    bool halted = false;
    std::uint8_t tg = 0;  // target number while selected, else 0
    std::uint64_t exchanges = 0;
    struct Tear {
      std::uint64_t at_exchange;
      TearWhen when;
    };
    std::optional<Tear> tear;
  };
  struct Pending {
    Bytes command;
    std::int64_t since_us;
  };
  struct Chain {  // the rest of a reply chained with MI
    std::uint8_t tg;
    Bytes rest;
  };

  ChipReply dispatch(ByteView c, std::int64_t now_us, std::optional<std::int64_t> pending_since_us);
  // One handler per command; `c` is the whole command (code first).
  ChipReply diagnose(ByteView c);
  ChipReply get_general_status();
  ChipReply read_register(ByteView c);
  ChipReply write_register(ByteView c);
  ChipReply rf_configuration(ByteView c);
  ChipReply power_down();
  ChipReply in_list_passive_target(ByteView c, bool retry);
  ChipReply in_auto_poll(ByteView c, std::int64_t now_us, std::optional<std::int64_t> since_us);
  ChipReply in_data_exchange(ByteView c);
  ChipReply in_communicate_thru(ByteView c);
  ChipReply in_release(ByteView c, bool halt_cards, std::uint8_t reply_code);
  ChipReply in_select(ByteView c);
  ChipReply tg_init_as_target(ByteView c, bool retry);
  ChipReply tg_get_data(bool retry);
  ChipReply tg_set_data(ByteView c);

  ChipReply exchange_iso_dep(Slot& slot, ByteView apdu);
  ChipReply exchange_mifare(Slot& slot, ByteView command);
  ChipReply chained(std::uint8_t reply_code, std::uint8_t tg, Bytes answer);
  // Target data of InListPassiveTarget / InAutoPoll: Tg ATQA SAK len UID [TL ATS].
  Bytes target_data(const Slot& slot, std::uint8_t tg, bool with_ats) const;
  Slot* find_selectable(ByteView cascaded_uid);
  Slot* find_selected(std::uint8_t tg);
  bool was_assigned(std::uint8_t tg) const;
  void release_targets(bool halt_cards);
  void field_off();
  void take_out(std::size_t index, const char* why);
  void end_target_mode();
  void event(std::string line);

  const SoftPn532Options options_;
  std::array<std::uint8_t, 0x10000> registers_{};
  std::uint8_t parameters_ = 0;
  std::uint8_t passive_retries_ = 0xFF;  // MxRtyPassiveActivation, 0xFF = until a card comes
  bool rf_on_ = false;
  bool asleep_ = true;  // a PN532 powers up in LowVbat mode
  std::uint8_t last_error_ = 0;
  std::uint8_t assigned_targets_ = 0;  // Tg numbers handed out by the last selection

  std::vector<Slot> field_;
  CardId next_id_ = 1;
  std::optional<Pending> pending_;
  std::optional<Chain> chain_;

  Phase phase_ = Phase::kOff;
  EmulatedTarget target_;
  bool terminal_present_ = false;
  std::uint64_t activations_ = 0;
  std::optional<std::pair<std::uint64_t, Bytes>> to_target_;    // C-APDU not yet fetched
  std::optional<std::uint64_t> awaiting_;                       // fetched, R-APDU not yet back
  std::optional<std::pair<std::uint64_t, Bytes>> from_target_;  // R-APDU for the terminal
  std::uint64_t next_seq_ = 1;

  Pn532Counters counters_;
  std::vector<std::string> events_;
};

}  // namespace citycard::hil::detail
