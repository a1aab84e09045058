#include "pn532_chip.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "citycard/hil/pn532_frame.h"

namespace citycard::hil::detail {

namespace {

// Command codes (PN532 user manual, UM0701-02, chapter 7).
namespace cmd {
constexpr std::uint8_t kDiagnose = 0x00;
constexpr std::uint8_t kGetFirmwareVersion = 0x02;
constexpr std::uint8_t kGetGeneralStatus = 0x04;
constexpr std::uint8_t kReadRegister = 0x06;
constexpr std::uint8_t kWriteRegister = 0x08;
constexpr std::uint8_t kReadGpio = 0x0C;
constexpr std::uint8_t kWriteGpio = 0x0E;
constexpr std::uint8_t kSetSerialBaudRate = 0x10;
constexpr std::uint8_t kSetParameters = 0x12;
constexpr std::uint8_t kSamConfiguration = 0x14;
constexpr std::uint8_t kPowerDown = 0x16;
constexpr std::uint8_t kRfConfiguration = 0x32;
constexpr std::uint8_t kInDataExchange = 0x40;
constexpr std::uint8_t kInCommunicateThru = 0x42;
constexpr std::uint8_t kInDeselect = 0x44;
constexpr std::uint8_t kInJumpForPsl = 0x46;
constexpr std::uint8_t kInListPassiveTarget = 0x4A;
constexpr std::uint8_t kInPsl = 0x4E;
constexpr std::uint8_t kInAtr = 0x50;
constexpr std::uint8_t kInRelease = 0x52;
constexpr std::uint8_t kInSelect = 0x54;
constexpr std::uint8_t kInJumpForDep = 0x56;
constexpr std::uint8_t kInAutoPoll = 0x60;
constexpr std::uint8_t kTgGetData = 0x86;
constexpr std::uint8_t kTgGetInitiatorCommand = 0x88;
constexpr std::uint8_t kTgGetTargetStatus = 0x8A;
constexpr std::uint8_t kTgInitAsTarget = 0x8C;
constexpr std::uint8_t kTgSetData = 0x8E;
constexpr std::uint8_t kTgResponseToInitiator = 0x90;
constexpr std::uint8_t kTgSetGeneralBytes = 0x92;
constexpr std::uint8_t kTgSetMetaData = 0x94;
}  // namespace cmd

// Status byte error codes (UM0701-02 table 22) as libnfc's pn53x.c maps them.
namespace err {
constexpr std::uint8_t kOk = 0x00;
constexpr std::uint8_t kTimeout = 0x01;     // the target did not answer -> NFC_ERFTRANS
constexpr std::uint8_t kMifareAuth = 0x14;  // -> NFC_EMFCAUTHFAIL
constexpr std::uint8_t kBadContext = 0x27;  // command not acceptable now -> NFC_EINVARG
constexpr std::uint8_t kReleased = 0x29;    // target released by the initiator -> NFC_ETGRELEASED
}  // namespace err

constexpr std::uint8_t kStatusMoreInformation = 0x40;  // MI: the reply continues
constexpr std::uint8_t kParamAutoRats = 0x10;
constexpr std::uint8_t kParamPiccEmulation = 0x20;
constexpr std::uint8_t kTargetModePicc = 0x04;
// TgInitAsTarget reply mode byte: 106 kbps, ISO/IEC 14443-4 PICC activated, MIFARE framing.
// libnfc needs bits 0x03 = 00 and bit 0x04 clear here (PN532.md).
constexpr std::uint8_t kActivatedPicc = 0x08;
constexpr std::uint8_t kBrTyIso14443a = 0x00;
// InAutoPoll target types answered by an ISO 14443-A card.
constexpr std::uint8_t kPollGeneric106 = 0x00;
constexpr std::uint8_t kPollMifare = 0x10;
constexpr std::uint8_t kPollIso14443_4a = 0x20;
constexpr std::int64_t kPollPeriodUnitUs = 150'000;
constexpr std::size_t kEventsMax = 64;
constexpr std::uint8_t kTargetsMax = 2;  // a PN532 handles two targets at once

ChipReply data(std::initializer_list<std::uint8_t> bytes) {
  return ChipReply{ChipReply::Kind::kData, Bytes(bytes)};
}
ChipReply syntax_error() {
  return ChipReply{ChipReply::Kind::kErrorFrame, {}};
}
ChipReply pending() {
  return ChipReply{ChipReply::Kind::kPending, {}};
}

// The UID behind InListPassiveTarget's initiator data: libnfc cascades 7- and 10-byte UIDs
// with 88 tags (iso14443_cascade_uid); undo exactly that.
Bytes uncascade(ByteView c) {
  if (c.size() == 8 && c[0] == 0x88) return Bytes(c.begin() + 1, c.end());
  if (c.size() == 12 && c[0] == 0x88 && c[4] == 0x88) {
    Bytes uid(c.begin() + 1, c.begin() + 4);
    uid.insert(uid.end(), c.begin() + 5, c.end());
    return uid;
  }
  return Bytes(c.begin(), c.end());
}

std::optional<std::int64_t> auto_poll_budget_us(ByteView c) {
  const std::uint8_t poll_nr = c[1];
  if (poll_nr == 0xFF) return std::nullopt;  // endless polling
  const auto types = static_cast<std::int64_t>(c.size() - 3);
  return std::int64_t{poll_nr} * c[2] * kPollPeriodUnitUs * types;
}

}  // namespace

Pn532Chip::Pn532Chip(const SoftPn532Options& options) : options_(options) {
  // CIU_Version reads as a PN532's (libnfc does not check it; tools that dump it look real).
  registers_[0x6327] = 0x80;
}

std::vector<std::string> Pn532Chip::take_events() {
  return std::exchange(events_, {});
}

void Pn532Chip::event(std::string line) {
  // Bounded: the owner drains events after every step; a flood between drains is cut.
  if (events_.size() < kEventsMax) events_.push_back(std::move(line));
}

ChipReply Pn532Chip::execute(ByteView c, std::int64_t now_us) {
  ++counters_.commands[c[0]];
  ChipReply reply = dispatch(c, now_us, std::nullopt);
  if (reply.kind == ChipReply::Kind::kPending)
    pending_ = Pending{Bytes(c.begin(), c.end()), now_us};
  return reply;
}

void Pn532Chip::cancel_pending() {
  if (!pending_) return;
  // libnfc gave up waiting for a terminal: the PN532 stops listening as a target.
  if (pending_->command[0] == cmd::kTgInitAsTarget && phase_ == Phase::kListening) {
    phase_ = Phase::kOff;
  }
  pending_.reset();
}

std::optional<ChipReply> Pn532Chip::retry_pending(std::int64_t now_us) {
  if (!pending_) return std::nullopt;
  ChipReply reply = dispatch(pending_->command, now_us, pending_->since_us);
  if (reply.kind == ChipReply::Kind::kPending) return std::nullopt;
  pending_.reset();
  return reply;
}

std::optional<std::int64_t> Pn532Chip::pending_deadline_us() const {
  if (!pending_ || pending_->command[0] != cmd::kInAutoPoll) return std::nullopt;
  const std::optional<std::int64_t> budget = auto_poll_budget_us(pending_->command);
  if (!budget) return std::nullopt;
  return pending_->since_us + *budget;
}

ChipReply Pn532Chip::dispatch(ByteView c, std::int64_t now_us,
                              std::optional<std::int64_t> pending_since_us) {
  const bool retry = pending_since_us.has_value();
  // Any command but an InDataExchange continuation drops the rest of a chained reply.
  if (c[0] != cmd::kInDataExchange) chain_.reset();
  switch (c[0]) {
    case cmd::kDiagnose:
      return diagnose(c);
    case cmd::kGetFirmwareVersion:
      return data({0x03, 0x32, 0x01, 0x06, 0x07});  // IC PN532, firmware 1.6, ISO A/B + 18092
    case cmd::kGetGeneralStatus:
      return get_general_status();
    case cmd::kReadRegister:
      return read_register(c);
    case cmd::kWriteRegister:
      return write_register(c);
    case cmd::kReadGpio:
      return data({0x0D, 0x3F, 0x06, 0x00});
    case cmd::kWriteGpio:
      return data({0x0F});
    case cmd::kSetSerialBaudRate:
      return data({0x11});  // a pty has no baud rate
    case cmd::kSetParameters:
      if (c.size() != 2) return syntax_error();
      parameters_ = c[1];
      return data({0x13});
    case cmd::kSamConfiguration:
      if (c.size() < 2) return syntax_error();
      return data({0x15});
    case cmd::kPowerDown:
      return power_down();
    case cmd::kRfConfiguration:
      return rf_configuration(c);
    case cmd::kInDataExchange:
      return in_data_exchange(c);
    case cmd::kInCommunicateThru:
      return in_communicate_thru(c);
    case cmd::kInDeselect:
      return in_release(c, /*halt_cards=*/true, 0x45);
    case cmd::kInRelease:
      // A release ends the ISO-DEP session (DESELECT) or halts a MIFARE card, like InDeselect;
      // in target mode it ends the emulation.
      if (phase_ != Phase::kOff) end_target_mode();
      return in_release(c, /*halt_cards=*/true, 0x53);
    case cmd::kInSelect:
      return in_select(c);
    case cmd::kInListPassiveTarget:
      return in_list_passive_target(c, retry);
    case cmd::kInAutoPoll:
      return in_auto_poll(c, now_us, pending_since_us);
    case cmd::kInJumpForDep:  // no NFC-DEP peer is ever in the field: the chip times out
      return data({0x57, err::kTimeout});
    case cmd::kInJumpForPsl:
      return data({0x47, err::kTimeout});
    case cmd::kInAtr:
      return data({0x51, err::kTimeout});
    case cmd::kInPsl:
      return data({0x4F, err::kOk});  // one bit rate only: nothing to change
    case cmd::kTgInitAsTarget:
      return tg_init_as_target(c, retry);
    case cmd::kTgGetData:
      return tg_get_data(retry);
    case cmd::kTgSetData:
      return tg_set_data(c);
    case cmd::kTgGetTargetStatus:
      return data({0x8B, static_cast<std::uint8_t>(phase_ == Phase::kActive ? 0x01 : 0x00), 0x00});
    case cmd::kTgGetInitiatorCommand:  // raw (non ISO-DEP) target mode is not modelled
      return data({0x89, err::kBadContext});
    case cmd::kTgResponseToInitiator:
      return data({0x91, err::kBadContext});
    case cmd::kTgSetGeneralBytes:
      return data({0x93, err::kOk});
    case cmd::kTgSetMetaData:
      return data({0x95, err::kOk});
    default:
      return syntax_error();
  }
}

ChipReply Pn532Chip::diagnose(ByteView c) {
  if (c.size() < 2) return syntax_error();
  switch (c[1]) {
    case 0x00: {  // communication line test: the exact echo libnfc checks at open
      ChipReply r{ChipReply::Kind::kData, Bytes(c.begin(), c.end())};
      r.data[0] = 0x01;
      return r;
    }
    case 0x06: {  // card presence
      ++counters_.presence_checks;
      const bool present = find_selected(1) != nullptr;
      return data({0x01, present ? err::kOk : err::kTimeout});
    }
    default:  // ROM, RAM, antenna and other self-tests pass
      return data({0x01, 0x00});
  }
}

ChipReply Pn532Chip::get_general_status() {
  Bytes r{0x05, last_error_, static_cast<std::uint8_t>(phase_ == Phase::kActive ? 1 : 0), 0};
  std::uint8_t n = 0;
  for (const Slot& s : field_) {
    if (s.tg == 0) continue;
    r.insert(r.end(), {s.tg, 0x00, 0x00, 0x00});  // 106 kbps both ways, ISO 14443-A
    ++n;
  }
  r[3] = n;
  r.push_back(0x00);  // SAM status
  return ChipReply{ChipReply::Kind::kData, std::move(r)};
}

ChipReply Pn532Chip::read_register(ByteView c) {
  if (c.size() < 3 || (c.size() - 1) % 2 != 0) return syntax_error();
  Bytes r{0x07};
  for (std::size_t i = 1; i + 1 < c.size(); i += 2) {
    r.push_back(registers_[(std::size_t{c[i]} << 8) | c[i + 1]]);
  }
  return ChipReply{ChipReply::Kind::kData, std::move(r)};
}

ChipReply Pn532Chip::write_register(ByteView c) {
  if (c.size() < 4 || (c.size() - 1) % 3 != 0) return syntax_error();
  for (std::size_t i = 1; i + 2 < c.size(); i += 3) {
    registers_[(std::size_t{c[i]} << 8) | c[i + 1]] = c[i + 2];
  }
  return data({0x09});
}

ChipReply Pn532Chip::rf_configuration(ByteView c) {
  if (c.size() < 3) return syntax_error();
  switch (c[1]) {
    case 0x01:  // RF field
      if ((c[2] & 0x01) != 0) {
        rf_on_ = true;
      } else {
        field_off();
      }
      break;
    case 0x05:  // MxRtyATR MxRtyPSL MxRtyPassiveActivation
      if (c.size() < 5) return syntax_error();
      passive_retries_ = c[4];
      break;
    default:  // timings, MaxRtyCOM, analog settings: nothing to simulate
      break;
  }
  return data({0x33});
}

ChipReply Pn532Chip::power_down() {
  field_off();
  if (phase_ != Phase::kOff) end_target_mode();
  asleep_ = true;  // the reply still goes out; the chip sleeps after it
  return data({0x17, err::kOk});
}

void Pn532Chip::field_off() {
  rf_on_ = false;
  chain_.reset();
  assigned_targets_ = 0;
  // Without power every card forgets its session and leaves HALT.
  for (Slot& s : field_) {
    s.card->power_off();
    s.halted = false;
    s.tg = 0;
  }
}

void Pn532Chip::release_targets(bool halt_cards) {
  chain_.reset();
  for (Slot& s : field_) {
    if (s.tg == 0) continue;
    s.tg = 0;
    s.card->power_off();  // the session ends (ISO-DEP DESELECT, or a new activation follows)
    if (halt_cards) s.halted = true;
  }
  assigned_targets_ = 0;
}

Pn532Chip::Slot* Pn532Chip::find_selectable(ByteView cascaded_uid) {
  if (!cascaded_uid.empty()) {
    // Selecting a known UID wakes a halted card too (WUPA), as libnfc's re-selection of a
    // MIFARE card after a failed AUTH expects.
    const Bytes uid = uncascade(cascaded_uid);
    for (Slot& s : field_) {
      if (s.tg == 0 && s.card->identity().uid == uid) return &s;
    }
    return nullptr;
  }
  // REQA: halted cards stay silent, which is how nfc-list steps through several cards.
  for (Slot& s : field_) {
    if (s.tg == 0 && !s.halted) return &s;
  }
  return nullptr;
}

Pn532Chip::Slot* Pn532Chip::find_selected(std::uint8_t tg) {
  for (Slot& s : field_) {
    if (s.tg != 0 && s.tg == tg) return &s;
  }
  return nullptr;
}

bool Pn532Chip::was_assigned(std::uint8_t tg) const {
  return tg >= 1 && tg <= assigned_targets_;
}

Bytes Pn532Chip::target_data(const Slot& slot, std::uint8_t tg, bool with_ats) const {
  const CardIdentity& id = slot.card->identity();
  Bytes d{tg, id.atqa[0], id.atqa[1], id.sak, static_cast<std::uint8_t>(id.uid.size())};
  put_bytes(d, id.uid);
  // The PN532 sends RATS itself (SetParameters fAutomaticRATS) and reports the ATS with TL.
  if (with_ats && id.iso_dep() && (parameters_ & kParamAutoRats) != 0) {
    d.push_back(static_cast<std::uint8_t>(id.ats.size() + 1));
    put_bytes(d, id.ats);
  }
  return d;
}

ChipReply Pn532Chip::in_list_passive_target(ByteView c, bool retry) {
  if (c.size() < 3 || c[1] < 1 || c[1] > kTargetsMax) return syntax_error();
  const std::uint8_t max_targets = c[1];
  const ByteView initiator_data = c.subspan(3);
  if (!retry) {
    release_targets(/*halt_cards=*/false);
    rf_on_ = true;  // the PN532 switches the field on to poll
  }
  if (!initiator_data.empty()) ++counters_.presence_checks;  // libnfc's MIFARE presence check
  if (c[2] != kBrTyIso14443a) return data({0x4B, 0x00});     // no FeliCa, type B or Jewel cards

  Bytes r{0x4B, 0x00};
  std::uint8_t found = 0;
  while (found < max_targets) {
    Slot* s = find_selectable(initiator_data);
    if (s == nullptr) break;
    ++found;
    s->card->power_off();  // a fresh activation starts from a fresh session
    s->halted = false;
    s->tg = found;
    put_bytes(r, target_data(*s, found, /*with_ats=*/true));
    if (!initiator_data.empty()) break;  // one UID names one card
  }
  if (found == 0 && passive_retries_ == 0xFF) return pending();  // wait for a card to come
  r[1] = found;
  assigned_targets_ = found;
  return ChipReply{ChipReply::Kind::kData, std::move(r)};
}

ChipReply Pn532Chip::in_auto_poll(ByteView c, std::int64_t now_us,
                                  std::optional<std::int64_t> since_us) {
  if (c.size() < 4 || c.size() > 3 + 15 || c[1] == 0 || c[2] == 0) return syntax_error();
  if (!since_us) {
    release_targets(/*halt_cards=*/false);
    rf_on_ = true;
  }
  for (std::size_t i = 3; i < c.size(); ++i) {
    const std::uint8_t type = c[i];
    if (type != kPollGeneric106 && type != kPollMifare && type != kPollIso14443_4a) continue;
    Slot* s = find_selectable({});
    if (s == nullptr) break;  // no A card at all: the other types cannot match either
    if (type == kPollIso14443_4a && !s->card->identity().iso_dep()) continue;
    s->card->power_off();
    s->tg = 1;
    assigned_targets_ = 1;
    const Bytes td = target_data(*s, 1, /*with_ats=*/type != kPollMifare);
    Bytes r{0x61, 0x01, type, static_cast<std::uint8_t>(td.size())};
    put_bytes(r, td);
    return ChipReply{ChipReply::Kind::kData, std::move(r)};
  }
  const std::optional<std::int64_t> budget = auto_poll_budget_us(c);
  if (budget && now_us - since_us.value_or(now_us) >= *budget) return data({0x61, 0x00});
  return pending();
}

ChipReply Pn532Chip::chained(std::uint8_t reply_code, std::uint8_t tg, Bytes answer) {
  const std::size_t chunk = std::max<std::size_t>(1, options_.exchange_chunk_bytes);
  ChipReply r{ChipReply::Kind::kData, {}, /*card_answer=*/true};
  r.data.reserve(2 + std::min(chunk, answer.size()));
  r.data.push_back(reply_code);
  r.data.push_back(err::kOk);
  if (answer.size() > chunk) {
    r.data[1] = kStatusMoreInformation;
    r.data.insert(r.data.end(), answer.begin(),
                  answer.begin() + static_cast<std::ptrdiff_t>(chunk));
    answer.erase(answer.begin(), answer.begin() + static_cast<std::ptrdiff_t>(chunk));
    chain_ = Chain{tg, std::move(answer)};
  } else {
    put_bytes(r.data, answer);
  }
  last_error_ = err::kOk;
  return r;
}

ChipReply Pn532Chip::in_data_exchange(ByteView c) {
  if (c.size() < 2) return syntax_error();
  const std::uint8_t tg = c[1] & 0x3F;
  const ByteView payload = c.subspan(2);
  if (chain_ && payload.empty() && chain_->tg == tg) {  // libnfc asks for the rest of an MI reply
    Bytes rest = std::move(chain_->rest);
    chain_.reset();
    return chained(0x41, tg, std::move(rest));
  }
  chain_.reset();
  if ((c[1] & kStatusMoreInformation) != 0) {  // host-side chaining: libnfc never needs it
    return data({0x41, err::kBadContext});
  }
  Slot* slot = find_selected(tg);
  if (slot == nullptr) {
    // A target that was selected and has gone (removed, torn, halted by a refused AUTH) does
    // not answer; a target number never handed out is a wrong command.
    last_error_ = was_assigned(tg) ? err::kTimeout : err::kBadContext;
    return data({0x41, last_error_});
  }
  const std::uint64_t index = slot->exchanges++;
  ++counters_.exchanges;
  if (slot->tear && slot->tear->at_exchange == index) {
    if (slot->tear->when == TearWhen::kAfterCommand) (void)slot->card->transceive(payload);
    ++counters_.tears;
    const auto at = static_cast<std::size_t>(slot - field_.data());
    take_out(at, slot->tear->when == TearWhen::kAfterCommand ? "torn after the command"
                                                             : "torn before the command");
    last_error_ = err::kTimeout;
    return data({0x41, err::kTimeout});
  }
  if (slot->card->kind() == FieldCard::Kind::kIsoDep) return exchange_iso_dep(*slot, payload);
  return exchange_mifare(*slot, payload);
}

ChipReply Pn532Chip::exchange_iso_dep(Slot& slot, ByteView apdu) {
  Bytes answer = slot.card->transceive(apdu);
  if (answer.empty()) {
    last_error_ = err::kTimeout;
    return data({0x41, err::kTimeout});
  }
  return chained(0x41, slot.tg, std::move(answer));
}

ChipReply Pn532Chip::exchange_mifare(Slot& slot, ByteView command) {
  if (command.empty()) return data({0x41, err::kTimeout});
  const std::uint8_t op = command[0];
  const Bytes answer = slot.card->transceive(command);
  ChipReply r{ChipReply::Kind::kData, {0x41, err::kOk}, /*card_answer=*/true};
  if (op == 0x60 || op == 0x61) {
    if (answer.empty()) {
      // A refused AUTH leaves the card halted (libnfc relies on this): it must be selected
      // again before anything else.
      slot.halted = true;
      slot.tg = 0;
      r.data[1] = err::kMifareAuth;
    }
  } else if (op == 0x30) {
    if (answer.size() == 16) {
      put_bytes(r.data, answer);
    } else {
      r.data[1] = err::kTimeout;
    }
  } else if (op == 0xA0 || op == 0xB0 || op == 0xC0 || op == 0xC1 || op == 0xC2) {
    if (answer.size() != 1 || answer[0] != kMifareAck) r.data[1] = err::kTimeout;
  } else if (answer.empty()) {
    r.data[1] = err::kTimeout;
  } else {
    put_bytes(r.data, answer);
  }
  last_error_ = r.data[1];
  return r;
}

ChipReply Pn532Chip::in_communicate_thru(ByteView c) {
  // An empty frame is how libnfc listens for an NFC Barcode (nfc-list): nothing answers.
  if (c.size() < 2) return data({0x43, err::kTimeout});
  // libnfc's presence check for ISO-DEP cards on a PN532 is an R(NAK) block sent raw
  // (PN532.md: 42 B2 -> 43 00 A2). A card that is there answers R(ACK) with the same block
  // number. Nothing else is answered raw: no card here speaks bit-level ISO 14443-3.
  const std::uint8_t pcb = c[1];
  const bool r_nak = (pcb & 0xF6) == 0xB2;
  if (r_nak) ++counters_.presence_checks;
  const Slot* s = find_selected(1);
  if (r_nak && s != nullptr && s->card->kind() == FieldCard::Kind::kIsoDep) {
    ChipReply r = data({0x43, err::kOk, static_cast<std::uint8_t>(0xA2 | (pcb & 0x09))});
    if ((pcb & 0x08) != 0 && c.size() > 2) r.data.push_back(c[2]);  // CID follows
    r.card_answer = true;
    return r;
  }
  last_error_ = err::kTimeout;
  return data({0x43, err::kTimeout});
}

ChipReply Pn532Chip::in_release(ByteView c, bool halt_cards, std::uint8_t reply_code) {
  if (c.size() != 2) return syntax_error();
  const std::uint8_t tg = c[1];
  if (tg == 0) {
    release_targets(halt_cards);
  } else if (Slot* s = find_selected(tg)) {
    if (chain_ && chain_->tg == tg) chain_.reset();
    s->tg = 0;
    s->card->power_off();
    if (halt_cards) s->halted = true;
  }
  return data({reply_code, err::kOk});
}

ChipReply Pn532Chip::in_select(ByteView c) {
  if (c.size() != 2) return syntax_error();
  if (find_selected(c[1]) != nullptr) return data({0x55, err::kOk});
  return data({0x55, was_assigned(c[1]) ? err::kTimeout : err::kBadContext});
}

ChipReply Pn532Chip::tg_init_as_target(ByteView c, bool retry) {
  if (!retry) {
    // 8C Mode MifareParams(6) FeliCaParams(18) NFCID3t(10) LEN_Gt Gt.. [LEN_Tk Tk..]
    if (c.size() < 37) return syntax_error();
    const std::size_t gt_len = c[36];
    if (37 + gt_len > c.size()) return syntax_error();
    if (phase_ == Phase::kActive) event("target mode restarted while activated");
    end_target_mode();
    const ByteView mifare = c.subspan(2, 6);
    target_ = EmulatedTarget{};
    target_.uid = {0x08, mifare[2], mifare[3], mifare[4]};  // the PN532 fixes NFCID1[0] = 08
    target_.atqa = {mifare[1], mifare[0]};  // sent LSB first; kept in nfc-list order
    target_.sak = mifare[5];
    const std::size_t tk_at = 37 + gt_len;
    if (tk_at < c.size()) {
      const std::size_t tk_len = std::min<std::size_t>(c[tk_at], c.size() - tk_at - 1);
      target_.historical_bytes.assign(c.begin() + static_cast<std::ptrdiff_t>(tk_at + 1),
                                      c.begin() + static_cast<std::ptrdiff_t>(tk_at + 1 + tk_len));
    }
    phase_ = Phase::kListening;
    if ((c[1] & 0x02) != 0) event("TgInitAsTarget in DEP-only mode: no DEP terminal here");
  }
  const bool dep_only = (c[1] & 0x02) != 0;  // on a retry `c` is the pending command
  if (phase_ != Phase::kListening || !terminal_present_ || dep_only) return pending();
  phase_ = Phase::kActive;
  ++activations_;
  const bool picc = (c[1] & kTargetModePicc) != 0 && (parameters_ & kParamPiccEmulation) != 0;
  event("target activated by the simulated terminal: uid " + to_hex(target_.uid));
  // The initiator's first command: in PICC mode the chip has answered RATS itself and reports
  // it (libnfc ignores it but needs at least one byte after the mode byte).
  return data({0x8D, static_cast<std::uint8_t>(picc ? kActivatedPicc : 0x00), 0xE0, 0x80});
}

ChipReply Pn532Chip::tg_get_data(bool /*retry*/) {
  if (phase_ != Phase::kActive) return data({0x87, err::kReleased});
  if (!to_target_) return pending();
  ChipReply r{ChipReply::Kind::kData, {0x87, err::kOk}};
  put_bytes(r.data, to_target_->second);
  awaiting_ = to_target_->first;
  to_target_.reset();
  return r;
}

ChipReply Pn532Chip::tg_set_data(ByteView c) {
  if (phase_ != Phase::kActive) return data({0x8F, err::kReleased});
  if (awaiting_) {
    from_target_ = std::make_pair(*awaiting_, Bytes(c.begin() + 1, c.end()));
    awaiting_.reset();
    ++counters_.terminal_apdus;
  } else {
    event("TgSetData with no C-APDU outstanding: dropped");
  }
  return data({0x8F, err::kOk});
}

void Pn532Chip::end_target_mode() {
  phase_ = Phase::kOff;
  to_target_.reset();
  awaiting_.reset();
}

void Pn532Chip::terminal_leave() {
  terminal_present_ = false;
  if (phase_ == Phase::kActive) phase_ = Phase::kReleased;
  to_target_.reset();
  awaiting_.reset();
}

std::uint64_t Pn532Chip::terminal_send(Bytes capdu) {
  const std::uint64_t seq = next_seq_++;
  to_target_ = std::make_pair(seq, std::move(capdu));
  return seq;
}

std::optional<Bytes> Pn532Chip::take_terminal_response(std::uint64_t seq) {
  if (!from_target_ || from_target_->first != seq) return std::nullopt;
  Bytes r = std::move(from_target_->second);
  from_target_.reset();
  return r;
}

void Pn532Chip::terminal_abandon(std::uint64_t seq) {
  if (to_target_ && to_target_->first == seq) to_target_.reset();
  if (awaiting_ == seq) awaiting_.reset();
  if (from_target_ && from_target_->first == seq) from_target_.reset();
}

Result<CardId> Pn532Chip::insert(std::shared_ptr<FieldCard> card) {
  if (!card) return Result<CardId>(Errc::kInvalidArgument, "no card");
  for (const Slot& s : field_) {
    if (s.card == card) return Result<CardId>(Errc::kInvalidArgument, "card already in the field");
  }
  if (field_.size() >= options_.field_cards_max) {
    return Result<CardId>(Errc::kTooLarge, "field full: " + std::to_string(field_.size()) +
                                               " cards (field_cards_max)");
  }
  card->power_off();  // it comes in unpowered, whatever it did before
  const CardId id = next_id_++;
  field_.push_back(Slot{id, std::move(card)});
  return id;
}

void Pn532Chip::take_out(std::size_t index, const char* why) {
  Slot& s = field_[index];
  if (chain_ && s.tg != 0 && chain_->tg == s.tg) chain_.reset();
  s.card->power_off();
  event("card " + std::to_string(s.id) + " (" + to_hex(s.card->identity().uid) +
        ") left the field: " + why);
  field_.erase(field_.begin() + static_cast<std::ptrdiff_t>(index));
}

std::shared_ptr<FieldCard> Pn532Chip::remove(CardId id) {
  for (std::size_t i = 0; i < field_.size(); ++i) {
    if (field_[i].id != id) continue;
    std::shared_ptr<FieldCard> card = field_[i].card;
    take_out(i, "removed");
    return card;
  }
  return nullptr;
}

void Pn532Chip::remove_all() {
  while (!field_.empty()) take_out(field_.size() - 1, "removed");
}

std::vector<FieldEntry> Pn532Chip::cards() const {
  std::vector<FieldEntry> out;
  out.reserve(field_.size());
  for (const Slot& s : field_) {
    out.push_back(
        FieldEntry{s.id, s.card->identity(), s.card->kind(), s.exchanges, s.halted, s.tg != 0});
  }
  return out;
}

Status Pn532Chip::tear_at(CardId id, std::uint64_t nth, TearWhen when) {
  for (Slot& s : field_) {
    if (s.id != id) continue;
    s.tear = Slot::Tear{s.exchanges + nth, when};
    return Status::ok();
  }
  return Status(Errc::kNotFound, "card " + std::to_string(id) + " is not in the field");
}

}  // namespace citycard::hil::detail
