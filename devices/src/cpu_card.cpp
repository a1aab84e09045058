#include "citycard/devices/cpu_card.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "citycard/protocol/check.h"

namespace citycard::devices {

using protocol::Command;
using protocol::Response;
namespace sw = protocol::sw;
namespace crypto = protocol::crypto;
namespace txn = protocol::txn;
namespace sfi = protocol::sfi;

namespace {

constexpr std::uint8_t kClaIso = 0x00;
constexpr std::uint8_t kClaPurse = 0x80;
constexpr std::uint8_t kClaSecure = 0x84;  // ISO class with secure messaging (MAC)
constexpr std::uint8_t kInsSelect = 0xA4;
constexpr std::uint8_t kInsReadBinary = 0xB0;
constexpr std::uint8_t kInsReadRecord = 0xB2;
constexpr std::uint8_t kInsVerify = 0x20;
constexpr std::uint8_t kInsGetChallenge = 0x84;
constexpr std::uint8_t kInsInitialize = 0x50;
constexpr std::uint8_t kInsCredit = 0x52;
constexpr std::uint8_t kInsDebit = 0x54;
constexpr std::uint8_t kInsGetProve = 0x5A;
constexpr std::uint8_t kInsGetBalance = 0x5C;
constexpr std::uint8_t kInsChangePin = 0x5E;
constexpr std::uint8_t kInsUpdateCapp = 0xDC;
constexpr std::uint8_t kInsApplicationBlock = 0x1E;
constexpr std::uint8_t kP1Load = 0x00;
constexpr std::uint8_t kP1Purchase = 0x01;
constexpr std::uint8_t kP1Capp = 0x03;
constexpr std::uint8_t kP2Purse = 0x02;  // EP; 01 would be the ED (passbook), not modelled
constexpr std::uint32_t kOverdraftMaxFen = 0xFFFFFF;  // a 3-byte field on the card
constexpr std::uint8_t kApplicationType = 0x02;       // electronic purse
constexpr std::uint8_t kApplicationVersion = 0x01;
constexpr std::size_t kLogBytes = protocol::LogRecord::kSize;
constexpr std::size_t kTravelBytes = 48;
constexpr std::size_t kMetroBytes = 128;
// What one EEPROM transaction writes besides file records: the purse fields, counters, proof,
// file pointers and PIN state, as a chip would lay them out.
constexpr std::size_t kPurseBytes = 40;

Response status(std::uint16_t s) {
  return Response::status(s);
}

// FCI of the purse ADF: 6F { 84 DF-name, A5 { 9F08 application version } }.
Bytes fci(const Bytes& aid) {
  Bytes proprietary{0x9F, 0x08, 0x01, kApplicationVersion};
  Bytes inner{0x84, static_cast<std::uint8_t>(aid.size())};
  put_bytes(inner, aid);
  put_u8(inner, 0xA5);
  put_u8(inner, static_cast<std::uint8_t>(proprietary.size()));
  put_bytes(inner, proprietary);
  Bytes out{0x6F, static_cast<std::uint8_t>(inner.size())};
  put_bytes(out, inner);
  return out;
}

// A PIN as the card stores and compares it: BCD, padded with F to whole bytes.
bool pin_to_bcd(const std::string& digits, std::array<std::uint8_t, 6>& out, std::uint8_t& n) {
  if (digits.size() < 4 || digits.size() > 12) return false;
  out.fill(0xFF);
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (digits[i] < '0' || digits[i] > '9') return false;
    const auto d = static_cast<std::uint8_t>(digits[i] - '0');
    out[i / 2] = i % 2 == 0 ? static_cast<std::uint8_t>((d << 4) | 0x0F)
                            : static_cast<std::uint8_t>((out[i / 2] & 0xF0) | d);
  }
  n = static_cast<std::uint8_t>(digits.size());
  return true;
}

// A PIN block is digits, then at most one F nibble at the very end.
bool valid_pin_block(ByteView pin) {
  if (pin.size() < 2 || pin.size() > 6) return false;
  for (std::size_t i = 0; i < pin.size(); ++i) {
    const std::uint8_t hi = pin[i] >> 4, lo = pin[i] & 0x0F;
    if (hi > 9) return false;
    if (lo > 9 && !(lo == 0x0F && i + 1 == pin.size())) return false;
  }
  return true;
}
std::uint8_t pin_block_digits(ByteView pin) {
  return static_cast<std::uint8_t>(pin.size() * 2 - ((pin.back() & 0x0F) == 0x0F ? 1 : 0));
}

void encode_log(const protocol::LogRecord& r, std::uint8_t* out) {
  out[0] = static_cast<std::uint8_t>(r.counter >> 8);
  out[1] = static_cast<std::uint8_t>(r.counter);
  out[2] = static_cast<std::uint8_t>(r.overdraft_fen >> 16);
  out[3] = static_cast<std::uint8_t>(r.overdraft_fen >> 8);
  out[4] = static_cast<std::uint8_t>(r.overdraft_fen);
  for (int i = 0; i < 4; ++i) out[5 + i] = static_cast<std::uint8_t>(r.amount_fen >> (24 - 8 * i));
  out[9] = r.type;
  std::memcpy(out + 10, r.terminal.data(), 6);
  std::memcpy(out + 16, r.datetime.data(), 7);
}

std::uint8_t next_slot(std::uint8_t newest, std::uint8_t count, std::uint8_t size) {
  return count == 0 ? 0 : static_cast<std::uint8_t>((newest + 1) % size);
}

}  // namespace

struct CpuCard::Journal {
  struct Write {
    std::uint8_t sfi = 0;
    std::uint8_t slot = 0;
    std::uint8_t bytes = 0;
    std::array<std::uint8_t, kMetroBytes> data{};
  };
  Purse purse;
  std::array<Write, 3> writes{};
  std::uint8_t write_count = 0;
};

struct CpuCard::CappCache {
  bool travel_staged = false;
  std::uint8_t metro_id = 0;  // 0: none staged
  std::array<std::uint8_t, kTravelBytes> travel{};
  std::array<std::uint8_t, kMetroBytes> metro{};
};

CpuCard::CpuCard(const protocol::CardImage& image, sim::Rng rng)
    : CpuCard(image, rng, CardProfile::standard(image.family)) {}

CpuCard::CpuCard(const protocol::CardImage& image, sim::Rng rng, const CardProfile& profile)
    : CpuCard(image, nullptr, rng, profile) {}

CpuCard::CpuCard(const protocol::CardImage& image, const IssuerKeyTable& keys, sim::Rng rng,
                 const CardProfile& profile)
    : CpuCard(image, &keys, rng, profile) {}

CpuCard::CpuCard(const protocol::CardImage& image, const IssuerKeyTable* keys, sim::Rng rng,
                 const CardProfile& profile)
    : profile_(&profile),
      key_table_(keys),
      serial_(image.serial),
      issuer_data_(image.issuer_data),
      valid_from_(image.valid_from),
      valid_to_(image.valid_to),
      overdraft_limit_fen_(std::min(image.overdraft_limit_fen, kOverdraftMaxFen)),
      key_version_(image.key_version),
      algorithm_(image.algorithm),
      card_type_(image.card_type),
      rng_state_(rng.next_u64()) {
  CITYCARD_CHECK(profile.family == image.family, "a card's profile is of its family");
  CITYCARD_CHECK(image.overdraft_limit_fen <= kOverdraftMaxFen, "overdraft is a 3-byte field");
  CITYCARD_CHECK(profile.log_records > 0 && profile.travel_records > 0 &&
                     profile.metro_records > 0 && profile.pin_tries_max > 0 &&
                     profile.pin_tries_max <= 15,
                 "a profile has every file and 1..15 PIN tries");
  if (key_table_ == nullptr) {
    own_keys_ = std::make_unique<const CardKeys>(keys_of(image));
  } else {
    CITYCARD_CHECK(keys->has_version(image.key_version), "the table holds the card's version");
  }
  purse_.balance_fen = image.balance_fen;
  purse_.offline_counter = image.offline_counter;
  purse_.online_counter = image.online_counter;
  purse_.pin_tries_left = profile.pin_tries_max;
  CITYCARD_CHECK(pin_to_bcd(image.pin, purse_.pin_bcd, purse_.pin_digits),
                 "a card PIN is 4..12 decimal digits");
}

CpuCard::~CpuCard() = default;
CpuCard::CpuCard(CpuCard&&) noexcept = default;
CpuCard& CpuCard::operator=(CpuCard&&) noexcept = default;

Bytes CpuCard::process(ByteView capdu) {
  if (!powered_) return {};
  command_pages_ = 0;
  // A session is good only for the commands that continue it (see the header).
  const Session session = std::exchange(session_, Session::kNone);
  Result<Command> command = Command::parse(capdu);
  const Response r = command ? dispatch(*command, session) : refuse(sw::kWrongLength);
  if (session_ != Session::kCapp) capp_.reset();
  if (!powered_) return {};  // power failed inside the command's EEPROM transaction
  if (power_cut_after_ >= 0) {
    // The command needed fewer page writes than the cut: it completed, then power failed.
    power_cut_after_ = -1;
    powered_ = false;
    return {};
  }
  return r.encode();
}

void CpuCard::reset() {
  powered_ = true;
  power_cut_after_ = -1;
  selected_ = false;
  pin_verified_ = false;
  session_ = Session::kNone;
  capp_.reset();
  recover();
}

bool CpuCard::arm_power_cut(std::uint32_t after_page_writes) {
  power_cut_after_ =
      static_cast<std::int32_t>(std::min<std::uint32_t>(after_page_writes, 1u << 30));
  return true;
}

LinkTiming CpuCard::link_timing() const {
  return LinkTiming{LinkTiming::Interface::kIsoDep, profile_->air, {}};
}

crypto::Key16 CpuCard::key(KeyUse use) const {
  if (own_keys_) return key_for(*own_keys_, use);
  return key_table_->card_key(serial_, key_version_, algorithm_, use);
}

std::size_t CpuCard::file_bytes(std::uint8_t file) const {
  switch (file) {
    case sfi::kLog:
      return profile_->log_records * kLogBytes;
    case sfi::kTravel:
      return profile_->travel_records * kTravelBytes;
    default:
      return profile_->metro_records * kMetroBytes;
  }
}

std::uint8_t* CpuCard::file_slot(std::uint8_t file, std::uint8_t slot) {
  std::unique_ptr<std::uint8_t[]>& f = file == sfi::kLog      ? log_file_
                                       : file == sfi::kTravel ? travel_file_
                                                              : metro_file_;
  if (!f) f = std::make_unique<std::uint8_t[]>(file_bytes(file));  // zero-filled
  return const_cast<std::uint8_t*>(std::as_const(*this).file_slot(file, slot));
}

const std::uint8_t* CpuCard::file_slot(std::uint8_t file, std::uint8_t slot) const {
  // Records never written read as zeros, as a freshly personalised file does.
  static const std::uint8_t kBlank[kMetroBytes] = {};
  switch (file) {
    case sfi::kLog:
      return log_file_ ? log_file_.get() + slot * kLogBytes : kBlank;
    case sfi::kTravel:
      return travel_file_ ? travel_file_.get() + slot * kTravelBytes : kBlank;
    default:
      return metro_file_ ? metro_file_.get() + slot * kMetroBytes : kBlank;
  }
}

std::size_t CpuCard::heap_bytes() const {
  return (own_keys_ ? sizeof(CardKeys) : 0) + (log_file_ ? file_bytes(sfi::kLog) : 0) +
         (travel_file_ ? file_bytes(sfi::kTravel) : 0) +
         (metro_file_ ? file_bytes(sfi::kMetro) : 0) + (capp_ ? sizeof(CappCache) : 0) +
         (journal_ ? sizeof(Journal) : 0);
}

std::vector<protocol::LogRecord> CpuCard::log() const {
  std::vector<protocol::LogRecord> out;
  for (std::size_t i = 0; i < purse_.log_count; ++i) {
    const auto slot = static_cast<std::uint8_t>((purse_.log_newest + profile_->log_records - i) %
                                                profile_->log_records);
    out.push_back(*protocol::LogRecord::decode(ByteView(file_slot(sfi::kLog, slot), kLogBytes)));
  }
  return out;
}

std::vector<Bytes> CpuCard::travel_records() const {
  std::vector<Bytes> out;
  for (std::size_t i = 0; i < purse_.travel_count; ++i) {
    const auto slot = static_cast<std::uint8_t>(
        (purse_.travel_newest + profile_->travel_records - i) % profile_->travel_records);
    const std::uint8_t* p = file_slot(sfi::kTravel, slot);
    out.emplace_back(p, p + kTravelBytes);
  }
  return out;
}

Bytes CpuCard::metro_record(std::uint8_t record_id) const {
  CITYCARD_CHECK(record_id >= 1 && record_id <= profile_->metro_records, "metro record id");
  const std::uint8_t* p = file_slot(sfi::kMetro, static_cast<std::uint8_t>(record_id - 1));
  return Bytes(p, p + kMetroBytes);
}

// ---- EEPROM transactions ----------------------------------------------------------------

std::uint32_t CpuCard::pages(std::size_t bytes) const {
  return static_cast<std::uint32_t>((bytes + profile_->eeprom_page_bytes - 1) /
                                    profile_->eeprom_page_bytes);
}

void CpuCard::apply_write(const FileWrite& w) {
  std::memcpy(file_slot(w.sfi, w.slot), w.data, w.bytes);
}

bool CpuCard::commit(const Commit& c) {
  // Page writes in order: the journal (purse and records), its valid flag, the purse, each
  // record, the flag cleared.
  std::size_t journal_bytes = kPurseBytes;
  std::uint32_t record_pages = 0;
  for (std::size_t i = 0; i < c.write_count; ++i) {
    journal_bytes += c.writes[i].bytes;
    record_pages += pages(c.writes[i].bytes);
  }
  const std::uint32_t journal_pages = pages(journal_bytes);
  const std::uint32_t steps = journal_pages + 1 + 1 + record_pages + 1;

  const std::int64_t budget =
      power_cut_after_ < 0 ? -1 : static_cast<std::int64_t>(power_cut_after_) - command_pages_;
  if (budget < 0 || budget >= steps) {
    purse_ = c.purse;
    for (std::size_t i = 0; i < c.write_count; ++i) apply_write(c.writes[i]);
    command_pages_ += steps;
    eeprom_page_writes_ += steps;
    return true;
  }

  // Power fails after `done` more page writes.
  const auto done = static_cast<std::uint32_t>(budget);
  command_pages_ += done;
  eeprom_page_writes_ += done;
  power_cut_after_ = -1;
  powered_ = false;
  if (done <= journal_pages) return false;  // the journal never became valid: old state stays
  // The journal is valid: keep it for power-on, and leave what was applied applied, so that
  // recovery has real work to do.
  journal_ = std::make_unique<Journal>();
  journal_->purse = c.purse;
  journal_->write_count = c.write_count;
  for (std::size_t i = 0; i < c.write_count; ++i) {
    auto& w = journal_->writes[i];
    w.sfi = c.writes[i].sfi;
    w.slot = c.writes[i].slot;
    w.bytes = c.writes[i].bytes;
    std::memcpy(w.data.data(), c.writes[i].data, w.bytes);
  }
  std::uint32_t step = journal_pages + 1;
  if (done > step) purse_ = c.purse;
  ++step;
  for (std::size_t i = 0; i < c.write_count; ++i) {
    step += pages(c.writes[i].bytes);
    if (done >= step) apply_write(c.writes[i]);
  }
  return false;
}

void CpuCard::recover() {
  if (!journal_) return;
  purse_ = journal_->purse;
  for (std::size_t i = 0; i < journal_->write_count; ++i) {
    const auto& w = journal_->writes[i];
    apply_write(FileWrite{w.sfi, w.slot, w.data.data(), w.bytes});
  }
  journal_.reset();
}

// ---- Dispatch ---------------------------------------------------------------------------

Response CpuCard::refuse(std::uint16_t s) {
  last_processing_us_ = static_cast<std::int32_t>(profile_->command.refused_us +
                                                  command_pages_ * profile_->eeprom_write_us);
  return status(s);
}

Response CpuCard::done(Bytes data, std::int64_t processing_us) {
  last_processing_us_ =
      static_cast<std::int32_t>(processing_us + command_pages_ * profile_->eeprom_write_us);
  return Response{std::move(data), sw::kOk};
}

Response CpuCard::dispatch(const Command& c, Session session) {
  if (c.cla == kClaIso) {
    switch (c.ins) {
      case kInsSelect:
        return select(c);
      case kInsReadBinary:
        return read_binary(c);
      case kInsReadRecord:
        return read_record(c);
      case kInsVerify:
        return verify_pin(c);
      case kInsGetChallenge:
        return get_challenge(c);
      default:
        return refuse(sw::kInsNotSupported);
    }
  }
  if (c.cla == kClaPurse) {
    switch (c.ins) {
      case kInsGetBalance:
        return get_balance(c);
      case kInsInitialize:
        return initialize(c);
      case kInsUpdateCapp:
        return update_capp(c, session);
      case kInsDebit:
        return debit(c, session);
      case kInsCredit:
        return credit(c, session);
      case kInsGetProve:
        return get_transaction_prove(c);
      case kInsChangePin:
        return change_pin(c);
      default:
        return refuse(sw::kInsNotSupported);
    }
  }
  if (c.cla == kClaSecure) {
    if (c.ins == kInsApplicationBlock) return application_block(c, session);
    return refuse(sw::kInsNotSupported);
  }
  return refuse(sw::kClaNotSupported);
}

Response CpuCard::select(const Command& c) {
  if (c.p1 == 0x04 && c.p2 == 0x00) {  // by DF name, first occurrence, return FCI
    if (c.data.size() < 5 || c.data.size() > 16) return refuse(sw::kWrongLength);
    const Bytes& aid = protocol::aid_for(profile_->family);
    // A failed SELECT leaves the current selection as it was (ISO 7816-4).
    if (c.data != aid) return refuse(sw::kFileNotFound);
    if (lock() == Lock::kPermanent) {
      selected_ = false;
      return refuse(sw::kAppBlockedPermanently);
    }
    selected_ = true;
    Response r = done(fci(aid), profile_->command.select_us);
    if (lock() == Lock::kTemporary) r.sw = sw::kBlockedSelected;
    return r;
  }
  if (c.p1 == 0x00 && c.p2 == 0x00) {  // by file identifier: only the MF is reachable
    if (c.data.size() != 2) return refuse(sw::kWrongLength);
    if (c.data[0] != 0x3F || c.data[1] != 0x00) return refuse(sw::kFileNotFound);
    selected_ = false;
    return done({}, profile_->command.select_us);
  }
  return refuse(sw::kWrongP1P2);
}

// File 0x15, 30 bytes. STANDARDS.md confirms the card number at offset 10 and the validity
// dates at 20/24; the rest is our reading of JT/T 978 (CJ/T 166 cards use it too here):
// issuer data (8) | application type (1) | application version (1) | application serial
// number (10) = 00 00 + the 8-byte serial the keys are diversified with | valid from (4) |
// valid to (4) | reserved (2).
Bytes CpuCard::issuer_file() const {
  Bytes f;
  f.reserve(kIssuerFileBytes);
  put_bytes(f, issuer_data_);
  put_u8(f, kApplicationType);
  put_u8(f, kApplicationVersion);
  put_u16be(f, 0);
  put_bytes(f, serial_);
  put_bytes(f, valid_from_);
  put_bytes(f, valid_to_);
  put_u16be(f, 0);
  return f;
}

// File 0x16, 55 bytes, OUR reading of the PBOC holder file: card type (1) | staff flag (1) |
// name (20) | ID number (32) | ID type (1). Simulated cards are anonymous: zeros.
Bytes CpuCard::holder_file() const {
  Bytes f(kHolderFileBytes, 0x00);
  f[0] = static_cast<std::uint8_t>(card_type_);
  f[1] = card_type_ == protocol::CardType::kStaff ? 0x01 : 0x00;
  return f;
}

Response CpuCard::read_binary(const Command& c) {
  // Without the SFI bit, P1-P2 is an offset into the current EF, and this card keeps none.
  if ((c.p1 & 0x80) == 0) return refuse(sw::kCommandNotAllowed);
  if ((c.p1 & 0x60) != 0) return refuse(sw::kWrongP1P2);
  if (!c.data.empty()) return refuse(sw::kWrongLength);
  const std::uint8_t file = c.p1 & 0x1F;
  if (!selected_ || (file != sfi::kIssuer && file != sfi::kHolder)) {
    return refuse(sw::kFileNotFound);
  }
  const Bytes content = file == sfi::kIssuer ? issuer_file() : holder_file();
  if (c.p2 >= content.size()) return refuse(sw::kWrongOffset);
  std::size_t n = content.size() - c.p2;
  if (c.le) n = std::min<std::size_t>(n, *c.le);
  const auto begin = content.begin() + c.p2;
  return done(Bytes(begin, begin + static_cast<std::ptrdiff_t>(n)), profile_->command.read_us);
}

Response CpuCard::read_record(const Command& c) {
  // P2 low bits 100: P1 is a record number; record 0 ("current record") has no meaning here.
  if ((c.p2 & 0x07) != 0x04 || c.p1 == 0) return refuse(sw::kWrongP1P2);
  if (!c.data.empty()) return refuse(sw::kWrongLength);
  const std::uint8_t file = c.p2 >> 3;
  if (!selected_ || (file != sfi::kLog && file != sfi::kTravel && file != sfi::kMetro)) {
    return refuse(sw::kFileNotFound);
  }
  const std::int64_t t = profile_->command.read_us;
  if (file == sfi::kMetro) {
    if (c.p1 > profile_->metro_records) return refuse(sw::kRecordNotFound);
    return done(metro_record(c.p1), t);
  }
  const bool log = file == sfi::kLog;
  const std::uint8_t count = log ? purse_.log_count : purse_.travel_count;
  const std::uint8_t newest = log ? purse_.log_newest : purse_.travel_newest;
  const std::uint8_t size = log ? profile_->log_records : profile_->travel_records;
  const std::size_t bytes = log ? kLogBytes : kTravelBytes;
  if (c.p1 > count) return refuse(sw::kRecordNotFound);
  const auto slot = static_cast<std::uint8_t>((newest + size - (c.p1 - 1u)) % size);
  const std::uint8_t* p = file_slot(file, slot);
  return done(Bytes(p, p + bytes), t);
}

bool CpuCard::pin_matches(ByteView pin) const {
  if (pin.size() != (purse_.pin_digits + 1u) / 2) return false;
  return std::equal(pin.begin(), pin.end(), purse_.pin_bcd.begin());
}

// The try counter goes down before the comparison and back up after a match, each an EEPROM
// write, so a tear in between costs the try. False if power failed; `*ok` says if it matched.
bool CpuCard::check_pin_and_count(ByteView pin, bool* ok) {
  Commit down{purse_};
  --down.purse.pin_tries_left;
  if (!commit(down)) return false;
  *ok = pin_matches(pin);
  if (*ok) {
    Commit up{purse_};
    up.purse.pin_tries_left = profile_->pin_tries_max;
    if (!commit(up)) return false;
  }
  return true;
}

Response CpuCard::verify_pin(const Command& c) {
  if (c.p1 != 0x00 || c.p2 != 0x00) return refuse(sw::kWrongP1P2);
  if (c.data.size() < 2 || c.data.size() > 6) return refuse(sw::kWrongLength);
  if (!selected_) return refuse(sw::kConditionsNotSatisfied);
  if (purse_.pin_tries_left == 0) return refuse(sw::kPinBlocked);
  bool ok = false;
  if (!check_pin_and_count(c.data, &ok)) return status(0);
  if (!ok) {
    return refuse(static_cast<std::uint16_t>(sw::kPinWrongBase | purse_.pin_tries_left));
  }
  pin_verified_ = true;
  return done({}, profile_->command.verify_pin_us);
}

Response CpuCard::change_pin(const Command& c) {
  if (c.p1 != 0x01 || c.p2 != 0x00) return refuse(sw::kWrongP1P2);  // 00: RELOAD PIN, not here
  const auto sep = std::find(c.data.begin(), c.data.end(), std::uint8_t{0xFF});
  const auto old_bytes = static_cast<std::size_t>(sep - c.data.begin());
  if (sep == c.data.end() || old_bytes < 2 || old_bytes > 6 || c.data.size() - old_bytes - 1 < 2 ||
      c.data.size() - old_bytes - 1 > 6) {
    return refuse(sw::kWrongLength);
  }
  if (!selected_ || blocked()) return refuse(sw::kConditionsNotSatisfied);
  const ByteView old_pin(c.data.data(), old_bytes);
  const ByteView new_pin(c.data.data() + old_bytes + 1, c.data.size() - old_bytes - 1);
  if (!valid_pin_block(new_pin) || pin_block_digits(new_pin) < 4) return refuse(sw::kWrongData);
  if (purse_.pin_tries_left == 0) return refuse(sw::kPinBlocked);
  bool ok = false;
  if (!check_pin_and_count(old_pin, &ok)) return status(0);
  if (!ok) {
    return refuse(static_cast<std::uint16_t>(sw::kPinWrongBase | purse_.pin_tries_left));
  }
  Commit change{purse_};
  change.purse.pin_bcd.fill(0xFF);
  std::copy(new_pin.begin(), new_pin.end(), change.purse.pin_bcd.begin());
  change.purse.pin_digits = pin_block_digits(new_pin);
  if (!commit(change)) return status(0);
  pin_verified_ = true;
  return done({}, profile_->command.change_pin_us);
}

protocol::Random4 CpuCard::next_random() {
  // splitmix64: the card needs 8 bytes of generator state, not a full sim::Rng.
  std::uint64_t z = (rng_state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return {static_cast<std::uint8_t>(z >> 24), static_cast<std::uint8_t>(z >> 16),
          static_cast<std::uint8_t>(z >> 8), static_cast<std::uint8_t>(z)};
}

Response CpuCard::get_challenge(const Command& c) {
  if (c.p1 != 0x00 || c.p2 != 0x00) return refuse(sw::kWrongP1P2);
  if (!c.data.empty() || !c.le) return refuse(sw::kWrongLength);
  if (*c.le != 4) return refuse(static_cast<std::uint16_t>(sw::kWrongLengthLe | 0x04));
  session_random_ = next_random();
  session_ = Session::kChallenge;
  return done(Bytes(session_random_.begin(), session_random_.end()),
              profile_->command.get_challenge_us);
}

Response CpuCard::get_balance(const Command& c) {
  if (c.p1 != 0x00 || c.p2 != kP2Purse) return refuse(sw::kWrongP1P2);
  if (!c.data.empty()) return refuse(sw::kWrongLength);
  if (!selected_) return refuse(sw::kConditionsNotSatisfied);
  Bytes out;
  put_u32be(out, purse_.balance_fen);
  return done(std::move(out), profile_->command.get_balance_us);
}

std::uint32_t CpuCard::available_fen() const {
  const std::uint64_t available =
      std::uint64_t{purse_.balance_fen} + (overdraft_limit_fen_ - purse_.overdraft_used_fen);
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(available, UINT32_MAX));
}

bool CpuCard::within_validity(const protocol::DateTime7& dt) const {
  // BCD YYYYMMDD compares like the date it encodes.
  const std::array<std::uint8_t, 4> date{dt[0], dt[1], dt[2], dt[3]};
  return date >= valid_from_ && date <= valid_to_;
}

Response CpuCard::initialize(const Command& c) {
  if (c.p2 != kP2Purse || (c.p1 != kP1Purchase && c.p1 != kP1Capp && c.p1 != kP1Load)) {
    return refuse(sw::kWrongP1P2);
  }
  if (c.data.size() != 11) return refuse(sw::kWrongLength);
  if (!selected_ || blocked()) return refuse(sw::kConditionsNotSatisfied);
  if (c.p1 == kP1Load) return initialize_load(c);
  if (c.data[0] != profile_->purchase_key_index) return refuse(sw::kKeyIndexNotSupported);
  if (purse_.offline_counter == UINT16_MAX) return refuse(sw::kCounterLimit);
  const std::uint32_t amount_fen = get_u32be(c.data, 1);
  if (amount_fen > available_fen()) return refuse(sw::kInsufficientBalance);

  session_random_ = next_random();
  session_amount_fen_ = amount_fen;
  session_terminal_ = take<6>(c.data, 5);
  session_ = c.p1 == kP1Capp ? Session::kCapp : Session::kPurchase;

  Bytes out;
  out.reserve(15);
  put_u32be(out, purse_.balance_fen);
  put_u16be(out, purse_.offline_counter);
  put_u24be(out, overdraft_limit_fen_);
  put_u8(out, key_version_);
  put_u8(out, static_cast<std::uint8_t>(algorithm_));
  put_bytes(out, session_random_);
  return done(std::move(out), profile_->command.initialize_us);
}

Response CpuCard::initialize_load(const Command& c) {
  if (c.data[0] != profile_->load_key_index) return refuse(sw::kKeyIndexNotSupported);
  if (profile_->load_requires_pin && !pin_verified_) return refuse(sw::kSecurityNotSatisfied);
  if (purse_.online_counter == UINT16_MAX) return refuse(sw::kCounterLimit);
  const std::uint32_t amount_fen = get_u32be(c.data, 1);
  const std::uint32_t repay = std::min(amount_fen, purse_.overdraft_used_fen);
  if (std::uint64_t{purse_.balance_fen} + (amount_fen - repay) > profile_->balance_max_fen) {
    return refuse(sw::kConditionsNotSatisfied);
  }
  session_random_ = next_random();
  session_amount_fen_ = amount_fen;
  session_terminal_ = take<6>(c.data, 5);
  session_ = Session::kLoad;

  const crypto::MacKey seslk(crypto::load_session_key(algorithm_, key(KeyUse::kLoad),
                                                      session_random_, purse_.online_counter));
  const protocol::Mac4 mac1 =
      crypto::load_mac1(seslk, purse_.balance_fen, amount_fen, txn::kLoadEp, session_terminal_);
  Bytes out;
  out.reserve(16);
  put_u32be(out, purse_.balance_fen);
  put_u16be(out, purse_.online_counter);
  put_u8(out, key_version_);
  put_u8(out, static_cast<std::uint8_t>(algorithm_));
  put_bytes(out, session_random_);
  put_bytes(out, mac1);
  return done(std::move(out), profile_->command.initialize_us);
}

Response CpuCard::update_capp(const Command& c, Session session) {
  const std::uint8_t file = c.p2 >> 3;
  if ((c.p2 & 0x07) != 0) return refuse(sw::kWrongP1P2);
  if (file != sfi::kTravel && file != sfi::kMetro) return refuse(sw::kFileNotFound);
  if (file == sfi::kTravel && c.p1 != 0x00) return refuse(sw::kWrongP1P2);
  const std::size_t bytes = file == sfi::kTravel ? kTravelBytes : kMetroBytes;
  if (c.data.size() != bytes) return refuse(sw::kWrongLength);
  if (!selected_ || blocked()) return refuse(sw::kConditionsNotSatisfied);
  if (session != Session::kCapp) return refuse(sw::kCommandNotAllowed);
  if (file == sfi::kMetro && (c.p1 == 0 || c.p1 > profile_->metro_records)) {
    return refuse(sw::kRecordNotFound);
  }
  // Staged in RAM; written with the DEBIT's EEPROM transaction, or dropped with the session.
  if (!capp_) capp_ = std::make_unique<CappCache>();
  if (file == sfi::kTravel) {
    std::copy(c.data.begin(), c.data.end(), capp_->travel.begin());
    capp_->travel_staged = true;
  } else {
    std::copy(c.data.begin(), c.data.end(), capp_->metro.begin());
    capp_->metro_id = c.p1;
  }
  session_ = Session::kCapp;
  return done({}, profile_->command.update_capp_us);
}

Response CpuCard::debit(const Command& c, Session session) {
  if (c.p1 != 0x01 || c.p2 != 0x00) return refuse(sw::kWrongP1P2);
  if (c.data.size() != 15) return refuse(sw::kWrongLength);
  if (!selected_ || blocked()) return refuse(sw::kConditionsNotSatisfied);
  if (session != Session::kPurchase && session != Session::kCapp) {
    return refuse(sw::kCommandNotAllowed);
  }
  const std::uint32_t terminal_seq = get_u32be(c.data, 0);
  const auto datetime = take<7>(c.data, 4);
  const auto mac1 = take<4>(c.data, 11);
  if (profile_->card_checks_validity && !within_validity(datetime)) {
    return refuse(sw::kConditionsNotSatisfied);
  }
  const std::uint8_t type = session == Session::kCapp ? txn::kCappPurchase : txn::kPurchase;
  const std::uint32_t amount_fen = session_amount_fen_;
  const crypto::MacKey sespk(crypto::purchase_session_key(
      algorithm_, key(KeyUse::kPurchase), session_random_, purse_.offline_counter, terminal_seq));
  if (!crypto::mac_equal(
          crypto::purchase_mac1(sespk, amount_fen, type, session_terminal_, datetime), mac1)) {
    return refuse(sw::kMacInvalid);
  }
  const protocol::Mac4 mac2 = crypto::purchase_mac2(sespk, amount_fen);
  const protocol::Mac4 tac =
      crypto::purchase_tac(crypto::MacKey(crypto::tac_key(algorithm_, key(KeyUse::kTac))),
                           amount_fen, type, session_terminal_, terminal_seq, datetime);

  Commit tx{purse_};
  Purse& p = tx.purse;
  const std::uint32_t from_balance_fen = std::min(amount_fen, p.balance_fen);
  p.balance_fen -= from_balance_fen;
  p.overdraft_used_fen += amount_fen - from_balance_fen;
  p.proof = Proof{p.offline_counter, type, mac2, tac};
  std::array<std::uint8_t, kLogBytes> log_record;
  encode_log(protocol::LogRecord{p.offline_counter, overdraft_limit_fen_, amount_fen, type,
                                 session_terminal_, datetime},
             log_record.data());
  ++p.offline_counter;
  const std::uint8_t log_slot = next_slot(p.log_newest, p.log_count, profile_->log_records);
  p.log_newest = log_slot;
  p.log_count = static_cast<std::uint8_t>(std::min<int>(p.log_count + 1, profile_->log_records));
  tx.writes[tx.write_count++] =
      FileWrite{sfi::kLog, log_slot, log_record.data(), static_cast<std::uint8_t>(kLogBytes)};
  if (session == Session::kCapp && capp_) {
    if (capp_->travel_staged) {
      const std::uint8_t slot =
          next_slot(p.travel_newest, p.travel_count, profile_->travel_records);
      p.travel_newest = slot;
      p.travel_count =
          static_cast<std::uint8_t>(std::min<int>(p.travel_count + 1, profile_->travel_records));
      tx.writes[tx.write_count++] = FileWrite{sfi::kTravel, slot, capp_->travel.data(),
                                              static_cast<std::uint8_t>(kTravelBytes)};
    }
    if (capp_->metro_id != 0) {
      tx.writes[tx.write_count++] =
          FileWrite{sfi::kMetro, static_cast<std::uint8_t>(capp_->metro_id - 1),
                    capp_->metro.data(), static_cast<std::uint8_t>(kMetroBytes)};
    }
  }
  if (!commit(tx)) return status(0);

  Bytes out;
  out.reserve(8);
  put_bytes(out, tac);
  put_bytes(out, mac2);
  return done(std::move(out), profile_->command.debit_us);
}

Response CpuCard::credit(const Command& c, Session session) {
  if (c.p1 != 0x00 || c.p2 != 0x00) return refuse(sw::kWrongP1P2);
  if (c.data.size() != 11) return refuse(sw::kWrongLength);
  if (!selected_ || blocked()) return refuse(sw::kConditionsNotSatisfied);
  if (session != Session::kLoad) return refuse(sw::kCommandNotAllowed);
  const auto datetime = take<7>(c.data, 0);  // date(4) || time(3)
  const auto mac2 = take<4>(c.data, 7);
  if (profile_->card_checks_validity && !within_validity(datetime)) {
    return refuse(sw::kConditionsNotSatisfied);
  }
  const std::uint32_t amount_fen = session_amount_fen_;
  const crypto::MacKey seslk(crypto::load_session_key(algorithm_, key(KeyUse::kLoad),
                                                      session_random_, purse_.online_counter));
  if (!crypto::mac_equal(
          crypto::load_mac2(seslk, amount_fen, txn::kLoadEp, session_terminal_, datetime), mac2)) {
    return refuse(sw::kMacInvalid);
  }
  Commit tx{purse_};
  Purse& p = tx.purse;
  const std::uint32_t repay = std::min(amount_fen, p.overdraft_used_fen);
  p.overdraft_used_fen -= repay;
  p.balance_fen += amount_fen - repay;
  const protocol::Mac4 tac = crypto::load_tac(
      crypto::MacKey(crypto::tac_key(algorithm_, key(KeyUse::kTac))), p.balance_fen,
      p.online_counter, amount_fen, txn::kLoadEp, session_terminal_, datetime);
  p.proof = Proof{p.online_counter, txn::kLoadEp, mac2, tac};
  std::array<std::uint8_t, kLogBytes> log_record;
  encode_log(protocol::LogRecord{p.online_counter, overdraft_limit_fen_, amount_fen, txn::kLoadEp,
                                 session_terminal_, datetime},
             log_record.data());
  ++p.online_counter;
  const std::uint8_t log_slot = next_slot(p.log_newest, p.log_count, profile_->log_records);
  p.log_newest = log_slot;
  p.log_count = static_cast<std::uint8_t>(std::min<int>(p.log_count + 1, profile_->log_records));
  tx.writes[tx.write_count++] =
      FileWrite{sfi::kLog, log_slot, log_record.data(), static_cast<std::uint8_t>(kLogBytes)};
  if (!commit(tx)) return status(0);
  return done(Bytes(tac.begin(), tac.end()), profile_->command.credit_us);
}

Response CpuCard::get_transaction_prove(const Command& c) {
  const std::uint8_t load_type = profile_->load_prove_type;
  if (c.p1 != 0x00 || (c.p2 != txn::kPurchase && c.p2 != txn::kCappPurchase && c.p2 != load_type)) {
    return refuse(sw::kWrongP1P2);
  }
  if (c.data.size() != 2) return refuse(sw::kWrongLength);
  if (!selected_) return refuse(sw::kConditionsNotSatisfied);
  const std::uint16_t counter_after = get_u16be(c.data, 0);
  const Proof& proof = purse_.proof;
  const bool type_matches = (proof.type == txn::kLoadEp && c.p2 == load_type) ||
                            (proof.type != txn::kLoadEp && proof.type != 0 && c.p2 == proof.type);
  if (!type_matches || static_cast<std::uint16_t>(proof.counter + 1) != counter_after) {
    return refuse(sw::kMacError);
  }
  Bytes out;
  out.reserve(8);
  put_bytes(out, proof.mac);
  put_bytes(out, proof.tac);
  return done(std::move(out), profile_->command.prove_us);
}

Response CpuCard::application_block(const Command& c, Session session) {
  if (c.p1 != 0x00 || (c.p2 != 0x00 && c.p2 != 0x01)) return refuse(sw::kWrongP1P2);
  if (c.data.size() != 4) return refuse(sw::kWrongLength);
  if (!selected_) return refuse(sw::kConditionsNotSatisfied);
  if (session != Session::kChallenge) return refuse(sw::kNoChallenge);
  const protocol::Mac4 expected =
      crypto::application_block_mac(algorithm_, key(KeyUse::kMaintenance), session_random_, c.p2);
  if (!crypto::mac_equal(expected, take<4>(c.data, 0))) return refuse(sw::kSmMacWrong);
  Commit lock_commit{purse_};
  lock_commit.purse.lock =
      static_cast<std::uint8_t>(c.p2 == 0x01 ? Lock::kPermanent : Lock::kTemporary);
  if (!commit(lock_commit)) return status(0);
  return done({}, profile_->command.application_block_us);
}

}  // namespace citycard::devices
