#include "citycard/devices/cpu_card.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
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

}  // namespace

struct CpuCard::Journal {
  Purse purse;
  bool has_txn = false;
  bool files_applied = false;  // the records were written before power failed
  bool online = false;
  bool has_travel = false;
  std::uint8_t metro_id = 0;
  std::array<std::uint8_t, kLogBytes> log{};
  std::array<std::uint8_t, kTravelBytes> travel{};
  std::array<std::uint8_t, kMetroBytes> metro{};
  PackedCardFiles::Txn txn() const {
    return PackedCardFiles::Txn{log.data(), online, has_travel ? travel.data() : nullptr, metro_id,
                                metro_id != 0 ? metro.data() : nullptr};
  }
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

struct CpuCard::Cold {
  std::unique_ptr<const CardKeys> keys;
  std::unique_ptr<Journal> journal;
  std::unique_ptr<std::array<std::uint8_t, kPersoBytes>> perso;
  bool empty() const { return !keys && !journal && !perso; }
};

struct CpuCard::Field {
  Session session = Session::kNone;
  bool selected = false;
  bool pin_verified = false;
  std::uint32_t session_amount_fen = 0;
  protocol::TerminalId session_terminal{};
  protocol::Random4 session_random{};
  std::int32_t power_cut_after = -1;  // armed page-write count, -1: none
  std::uint32_t command_pages = 0;    // page writes of the command being processed
  std::int32_t last_processing_us = 0;
  std::unique_ptr<CappCache> capp;
};

const CpuCard::Class* CpuCard::class_of(const CardProfile* profile, const IssuerKeyTable* keys) {
  static std::mutex mu;
  static std::map<std::pair<const void*, const void*>, std::unique_ptr<const Class>> classes;
  std::lock_guard<std::mutex> lock(mu);
  auto& c = classes[{profile, keys}];
  if (!c) c = std::make_unique<const Class>(Class{profile, keys});
  return c.get();
}

std::unique_ptr<CpuCard::Field>& CpuCard::spare_field() {
  // Not per card: one block per thread, so a tap does not go to malloc for its Field.
  thread_local std::unique_ptr<Field> spare;
  return spare;
}

CpuCard::Field& CpuCard::field() {
  if (!field_) {
    std::unique_ptr<Field>& spare = spare_field();
    if (spare) {
      field_ = std::move(spare);
      *field_ = Field{};
    } else {
      field_ = std::make_unique<Field>();
    }
  }
  return *field_;
}

CpuCard::Cold& CpuCard::cold() {
  if (!cold_) cold_ = std::make_unique<Cold>();
  return *cold_;
}

std::int64_t CpuCard::last_processing_us() const {
  return field_ ? field_->last_processing_us : 0;
}

const std::uint8_t* CpuCard::perso_bytes() const {
  return perso_id_ != InternTable::kFull ? InternTable::shared().get(perso_id_).data()
                                         : cold_->perso->data();
}

std::uint8_t CpuCard::key_version() const {
  return perso_bytes()[19];
}

crypto::Algorithm CpuCard::algorithm() const {
  return static_cast<crypto::Algorithm>(perso_bytes()[20]);
}

CpuCard::Perso CpuCard::perso() const {
  const std::uint8_t* b = perso_bytes();
  Perso p;
  std::memcpy(p.issuer_data.data(), b, 8);
  std::memcpy(p.valid_from.data(), b + 8, 4);
  std::memcpy(p.valid_to.data(), b + 12, 4);
  p.overdraft_limit_fen = std::uint32_t{b[16]} << 16 | std::uint32_t{b[17]} << 8 | b[18];
  p.key_version = b[19];
  p.algorithm = static_cast<crypto::Algorithm>(b[20]);
  p.card_type = static_cast<protocol::CardType>(b[21]);
  return p;
}

std::uint32_t CpuCard::overdraft_limit_fen() const {
  const std::uint8_t* b = perso_bytes();
  return std::uint32_t{b[16]} << 16 | std::uint32_t{b[17]} << 8 | b[18];
}

CpuCard::CpuCard(const protocol::CardImage& image, const IssuerKeyTable* keys, sim::Rng rng,
                 const CardProfile& profile)
    : class_(class_of(&profile, keys)), rng_state_(rng.next_u64()), serial_(image.serial) {
  CITYCARD_CHECK(profile.family == image.family, "a card's profile is of its family");
  CITYCARD_CHECK(image.overdraft_limit_fen <= kOverdraftMaxFen, "overdraft is a 3-byte field");
  CITYCARD_CHECK(profile.log_records > 0 && profile.travel_records > 0 &&
                     profile.metro_records > 0 && profile.pin_tries_max > 0 &&
                     profile.pin_tries_max <= 15,
                 "a profile has every file and 1..15 PIN tries");
  if (keys == nullptr) {
    cold().keys = std::make_unique<const CardKeys>(keys_of(image));
  } else {
    CITYCARD_CHECK(keys->has_version(image.key_version), "the table holds the card's version");
  }
  std::array<std::uint8_t, kPersoBytes> perso{};
  std::memcpy(perso.data(), image.issuer_data.data(), 8);
  std::memcpy(perso.data() + 8, image.valid_from.data(), 4);
  std::memcpy(perso.data() + 12, image.valid_to.data(), 4);
  perso[16] = static_cast<std::uint8_t>(image.overdraft_limit_fen >> 16);
  perso[17] = static_cast<std::uint8_t>(image.overdraft_limit_fen >> 8);
  perso[18] = static_cast<std::uint8_t>(image.overdraft_limit_fen);
  perso[19] = image.key_version;
  perso[20] = static_cast<std::uint8_t>(image.algorithm);
  perso[21] = static_cast<std::uint8_t>(image.card_type);
  perso_id_ = InternTable::shared().intern(ByteView(perso.data(), perso.size()));
  if (perso_id_ == InternTable::kFull) {
    cold().perso = std::make_unique<std::array<std::uint8_t, kPersoBytes>>(perso);
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
  field().command_pages = 0;
  // A session is good only for the commands that continue it (see the header).
  const Session session = std::exchange(field().session, Session::kNone);
  Result<Command> command = Command::parse(capdu);
  const Response r = command ? dispatch(*command, session) : refuse(sw::kWrongLength);
  if (field().session != Session::kCapp) field().capp.reset();
  if (!powered_) return {};  // power failed inside the command's EEPROM transaction
  if (field().power_cut_after >= 0) {
    // The command needed fewer page writes than the cut: it completed, then power failed.
    field().power_cut_after = -1;
    powered_ = false;
    return {};
  }
  return r.encode();
}

void CpuCard::reset() {
  powered_ = true;
  // Selection, session, PIN state, capp cache, power-cut plan: gone.
  if (field_ && !spare_field()) {
    field_->capp.reset();
    spare_field() = std::move(field_);
  }
  field_.reset();
  recover();
}

bool CpuCard::arm_power_cut(std::uint32_t after_page_writes) {
  field().power_cut_after =
      static_cast<std::int32_t>(std::min<std::uint32_t>(after_page_writes, 1u << 30));
  return true;
}

LinkTiming CpuCard::link_timing() const {
  return LinkTiming{LinkTiming::Interface::kIsoDep, class_->profile->air, {}};
}

crypto::Key16 CpuCard::key(KeyUse use) const {
  if (class_->keys == nullptr) return key_for(*cold_->keys, use);
  return class_->keys->card_key(serial_, key_version(), algorithm(), use);
}

PackedCardFiles::Context CpuCard::files_context(const Purse& p) const {
  return PackedCardFiles::Context{class_->profile->log_records, class_->profile->travel_records,
                                  p.offline_counter, p.online_counter, overdraft_limit_fen()};
}

std::size_t CpuCard::heap_bytes() const {
  std::size_t n = files_.heap_bytes();
  if (cold_) {
    n += sizeof(Cold) + (cold_->keys ? sizeof(CardKeys) : 0) +
         (cold_->journal ? sizeof(Journal) : 0) + (cold_->perso ? kPersoBytes : 0);
  }
  if (field_) n += sizeof(Field) + (field_->capp ? sizeof(CappCache) : 0);
  return n;
}

std::vector<protocol::LogRecord> CpuCard::log() const {
  std::vector<protocol::LogRecord> out;
  const PackedCardFiles::Context ctx = files_context(purse_);
  std::array<std::uint8_t, kLogBytes> r;
  for (std::size_t i = 0; files_.read_log(ctx, i, r.data()); ++i) {
    out.push_back(*protocol::LogRecord::decode(ByteView(r.data(), r.size())));
  }
  return out;
}

std::vector<Bytes> CpuCard::travel_records() const {
  std::vector<Bytes> out;
  const PackedCardFiles::Context ctx = files_context(purse_);
  std::array<std::uint8_t, kTravelBytes> r;
  for (std::size_t i = 0; files_.read_travel(ctx, i, r.data()); ++i) {
    out.emplace_back(r.begin(), r.end());
  }
  return out;
}

Bytes CpuCard::metro_record(std::uint8_t record_id) const {
  CITYCARD_CHECK(record_id >= 1 && record_id <= class_->profile->metro_records, "metro record id");
  Bytes out(kMetroBytes);
  files_.read_metro(record_id, out.data());
  return out;
}

// ---- EEPROM transactions ----------------------------------------------------------------

std::uint32_t CpuCard::pages(std::size_t bytes) const {
  return static_cast<std::uint32_t>((bytes + class_->profile->eeprom_page_bytes - 1) /
                                    class_->profile->eeprom_page_bytes);
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
      field().power_cut_after < 0
          ? -1
          : static_cast<std::int64_t>(field().power_cut_after) - field().command_pages;
  if (budget < 0 || budget >= steps) {
    purse_ = c.purse;
    if (c.write_count > 0) files_.push(files_context(c.purse), c.txn);
    field().command_pages += steps;
    eeprom_page_writes_ += steps;
    return true;
  }

  // Power fails after `done` more page writes.
  const auto done = static_cast<std::uint32_t>(budget);
  field().command_pages += done;
  eeprom_page_writes_ += done;
  field().power_cut_after = -1;
  powered_ = false;
  if (done <= journal_pages) return false;  // the journal never became valid: old state stays
  // The journal is valid: keep it for power-on, and leave what was applied applied, so that
  // recovery has real work to do.
  cold().journal = std::make_unique<Journal>();
  Journal& j = *cold_->journal;
  j.purse = c.purse;
  if (c.write_count > 0) {
    j.has_txn = true;
    j.online = c.txn.online;
    std::memcpy(j.log.data(), c.txn.log, kLogBytes);
    if (c.txn.travel != nullptr) {
      j.has_travel = true;
      std::memcpy(j.travel.data(), c.txn.travel, kTravelBytes);
    }
    if (c.txn.metro_id != 0) {
      j.metro_id = c.txn.metro_id;
      std::memcpy(j.metro.data(), c.txn.metro, kMetroBytes);
    }
  }
  const std::uint32_t step = journal_pages + 1;
  if (done > step) purse_ = c.purse;
  // The records are one packed block here: written once all their pages are.
  if (j.has_txn && done >= step + 1 + record_pages) {
    files_.push(files_context(c.purse), c.txn);
    j.files_applied = true;
  }
  return false;
}

void CpuCard::recover() {
  if (!cold_ || !cold_->journal) return;
  const Journal& j = *cold_->journal;
  purse_ = j.purse;
  if (j.has_txn && !j.files_applied) files_.push(files_context(purse_), j.txn());
  cold_->journal.reset();
  if (cold_->empty()) cold_.reset();
}

// ---- Dispatch ---------------------------------------------------------------------------

Response CpuCard::refuse(std::uint16_t s) {
  field().last_processing_us =
      static_cast<std::int32_t>(class_->profile->command.refused_us +
                                field().command_pages * class_->profile->eeprom_write_us);
  return status(s);
}

Response CpuCard::done(Bytes data, std::int64_t processing_us) {
  field().last_processing_us = static_cast<std::int32_t>(
      processing_us + field().command_pages * class_->profile->eeprom_write_us);
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
    const Bytes& aid = protocol::aid_for(class_->profile->family);
    // A failed SELECT leaves the current selection as it was (ISO 7816-4).
    if (c.data != aid) return refuse(sw::kFileNotFound);
    if (lock() == Lock::kPermanent) {
      field().selected = false;
      return refuse(sw::kAppBlockedPermanently);
    }
    field().selected = true;
    Response r = done(fci(aid), class_->profile->command.select_us);
    if (lock() == Lock::kTemporary) r.sw = sw::kBlockedSelected;
    return r;
  }
  if (c.p1 == 0x00 && c.p2 == 0x00) {  // by file identifier: only the MF is reachable
    if (c.data.size() != 2) return refuse(sw::kWrongLength);
    if (c.data[0] != 0x3F || c.data[1] != 0x00) return refuse(sw::kFileNotFound);
    field().selected = false;
    return done({}, class_->profile->command.select_us);
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
  put_bytes(f, perso().issuer_data);
  put_u8(f, kApplicationType);
  put_u8(f, kApplicationVersion);
  put_u16be(f, 0);
  put_bytes(f, serial_);
  put_bytes(f, perso().valid_from);
  put_bytes(f, perso().valid_to);
  put_u16be(f, 0);
  return f;
}

// File 0x16, 55 bytes, OUR reading of the PBOC holder file: card type (1) | staff flag (1) |
// name (20) | ID number (32) | ID type (1). Simulated cards are anonymous: zeros.
Bytes CpuCard::holder_file() const {
  Bytes f(kHolderFileBytes, 0x00);
  f[0] = static_cast<std::uint8_t>(perso().card_type);
  f[1] = perso().card_type == protocol::CardType::kStaff ? 0x01 : 0x00;
  return f;
}

Response CpuCard::read_binary(const Command& c) {
  // Without the SFI bit, P1-P2 is an offset into the current EF, and this card keeps none.
  if ((c.p1 & 0x80) == 0) return refuse(sw::kCommandNotAllowed);
  if ((c.p1 & 0x60) != 0) return refuse(sw::kWrongP1P2);
  if (!c.data.empty()) return refuse(sw::kWrongLength);
  const std::uint8_t file = c.p1 & 0x1F;
  if (!field().selected || (file != sfi::kIssuer && file != sfi::kHolder)) {
    return refuse(sw::kFileNotFound);
  }
  const Bytes content = file == sfi::kIssuer ? issuer_file() : holder_file();
  if (c.p2 >= content.size()) return refuse(sw::kWrongOffset);
  std::size_t n = content.size() - c.p2;
  if (c.le) n = std::min<std::size_t>(n, *c.le);
  const auto begin = content.begin() + c.p2;
  return done(Bytes(begin, begin + static_cast<std::ptrdiff_t>(n)),
              class_->profile->command.read_us);
}

Response CpuCard::read_record(const Command& c) {
  // P2 low bits 100: P1 is a record number; record 0 ("current record") has no meaning here.
  if ((c.p2 & 0x07) != 0x04 || c.p1 == 0) return refuse(sw::kWrongP1P2);
  if (!c.data.empty()) return refuse(sw::kWrongLength);
  const std::uint8_t file = c.p2 >> 3;
  if (!field().selected || (file != sfi::kLog && file != sfi::kTravel && file != sfi::kMetro)) {
    return refuse(sw::kFileNotFound);
  }
  const std::int64_t t = class_->profile->command.read_us;
  if (file == sfi::kMetro) {
    if (c.p1 > class_->profile->metro_records) return refuse(sw::kRecordNotFound);
    return done(metro_record(c.p1), t);
  }
  const PackedCardFiles::Context ctx = files_context(purse_);
  std::array<std::uint8_t, kTravelBytes> record;
  const bool log = file == sfi::kLog;
  if (log ? !files_.read_log(ctx, c.p1 - 1u, record.data())
          : !files_.read_travel(ctx, c.p1 - 1u, record.data())) {
    return refuse(sw::kRecordNotFound);
  }
  return done(Bytes(record.begin(), record.begin() + (log ? kLogBytes : kTravelBytes)), t);
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
    up.purse.pin_tries_left = class_->profile->pin_tries_max;
    if (!commit(up)) return false;
  }
  return true;
}

Response CpuCard::verify_pin(const Command& c) {
  if (c.p1 != 0x00 || c.p2 != 0x00) return refuse(sw::kWrongP1P2);
  if (c.data.size() < 2 || c.data.size() > 6) return refuse(sw::kWrongLength);
  if (!field().selected) return refuse(sw::kConditionsNotSatisfied);
  if (purse_.pin_tries_left == 0) return refuse(sw::kPinBlocked);
  bool ok = false;
  if (!check_pin_and_count(c.data, &ok)) return status(0);
  if (!ok) {
    return refuse(static_cast<std::uint16_t>(sw::kPinWrongBase | purse_.pin_tries_left));
  }
  field().pin_verified = true;
  return done({}, class_->profile->command.verify_pin_us);
}

Response CpuCard::change_pin(const Command& c) {
  if (c.p1 != 0x01 || c.p2 != 0x00) return refuse(sw::kWrongP1P2);  // 00: RELOAD PIN, not here
  const auto sep = std::find(c.data.begin(), c.data.end(), std::uint8_t{0xFF});
  const auto old_bytes = static_cast<std::size_t>(sep - c.data.begin());
  if (sep == c.data.end() || old_bytes < 2 || old_bytes > 6 || c.data.size() - old_bytes - 1 < 2 ||
      c.data.size() - old_bytes - 1 > 6) {
    return refuse(sw::kWrongLength);
  }
  if (!field().selected || blocked()) return refuse(sw::kConditionsNotSatisfied);
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
  field().pin_verified = true;
  return done({}, class_->profile->command.change_pin_us);
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
  field().session_random = next_random();
  field().session = Session::kChallenge;
  return done(Bytes(field().session_random.begin(), field().session_random.end()),
              class_->profile->command.get_challenge_us);
}

Response CpuCard::get_balance(const Command& c) {
  if (c.p1 != 0x00 || c.p2 != kP2Purse) return refuse(sw::kWrongP1P2);
  if (!c.data.empty()) return refuse(sw::kWrongLength);
  if (!field().selected) return refuse(sw::kConditionsNotSatisfied);
  Bytes out;
  put_u32be(out, purse_.balance_fen);
  return done(std::move(out), class_->profile->command.get_balance_us);
}

std::uint32_t CpuCard::available_fen() const {
  const std::uint64_t available =
      std::uint64_t{purse_.balance_fen} + (overdraft_limit_fen() - purse_.overdraft_used_fen);
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(available, UINT32_MAX));
}

bool CpuCard::within_validity(const protocol::DateTime7& dt) const {
  // BCD YYYYMMDD compares like the date it encodes.
  const std::array<std::uint8_t, 4> date{dt[0], dt[1], dt[2], dt[3]};
  return date >= perso().valid_from && date <= perso().valid_to;
}

Response CpuCard::initialize(const Command& c) {
  if (c.p2 != kP2Purse || (c.p1 != kP1Purchase && c.p1 != kP1Capp && c.p1 != kP1Load)) {
    return refuse(sw::kWrongP1P2);
  }
  if (c.data.size() != 11) return refuse(sw::kWrongLength);
  if (!field().selected || blocked()) return refuse(sw::kConditionsNotSatisfied);
  if (c.p1 == kP1Load) return initialize_load(c);
  if (c.data[0] != class_->profile->purchase_key_index) return refuse(sw::kKeyIndexNotSupported);
  if (purse_.offline_counter == UINT16_MAX) return refuse(sw::kCounterLimit);
  const std::uint32_t amount_fen = get_u32be(c.data, 1);
  if (amount_fen > available_fen()) return refuse(sw::kInsufficientBalance);

  field().session_random = next_random();
  field().session_amount_fen = amount_fen;
  field().session_terminal = take<6>(c.data, 5);
  field().session = c.p1 == kP1Capp ? Session::kCapp : Session::kPurchase;

  Bytes out;
  out.reserve(15);
  put_u32be(out, purse_.balance_fen);
  put_u16be(out, purse_.offline_counter);
  put_u24be(out, overdraft_limit_fen());
  put_u8(out, key_version());
  put_u8(out, static_cast<std::uint8_t>(algorithm()));
  put_bytes(out, field().session_random);
  return done(std::move(out), class_->profile->command.initialize_us);
}

Response CpuCard::initialize_load(const Command& c) {
  if (c.data[0] != class_->profile->load_key_index) return refuse(sw::kKeyIndexNotSupported);
  if (class_->profile->load_requires_pin && !field().pin_verified)
    return refuse(sw::kSecurityNotSatisfied);
  if (purse_.online_counter == UINT16_MAX) return refuse(sw::kCounterLimit);
  const std::uint32_t amount_fen = get_u32be(c.data, 1);
  const std::uint32_t repay = std::min(amount_fen, purse_.overdraft_used_fen);
  if (std::uint64_t{purse_.balance_fen} + (amount_fen - repay) > class_->profile->balance_max_fen) {
    return refuse(sw::kConditionsNotSatisfied);
  }
  field().session_random = next_random();
  field().session_amount_fen = amount_fen;
  field().session_terminal = take<6>(c.data, 5);
  field().session = Session::kLoad;

  const crypto::MacKey seslk(crypto::load_session_key(
      algorithm(), key(KeyUse::kLoad), field().session_random, purse_.online_counter));
  const protocol::Mac4 mac1 = crypto::load_mac1(seslk, purse_.balance_fen, amount_fen, txn::kLoadEp,
                                                field().session_terminal);
  Bytes out;
  out.reserve(16);
  put_u32be(out, purse_.balance_fen);
  put_u16be(out, purse_.online_counter);
  put_u8(out, key_version());
  put_u8(out, static_cast<std::uint8_t>(algorithm()));
  put_bytes(out, field().session_random);
  put_bytes(out, mac1);
  return done(std::move(out), class_->profile->command.initialize_us);
}

Response CpuCard::update_capp(const Command& c, Session session) {
  const std::uint8_t file = c.p2 >> 3;
  if ((c.p2 & 0x07) != 0) return refuse(sw::kWrongP1P2);
  if (file != sfi::kTravel && file != sfi::kMetro) return refuse(sw::kFileNotFound);
  if (file == sfi::kTravel && c.p1 != 0x00) return refuse(sw::kWrongP1P2);
  const std::size_t bytes = file == sfi::kTravel ? kTravelBytes : kMetroBytes;
  if (c.data.size() != bytes) return refuse(sw::kWrongLength);
  if (!field().selected || blocked()) return refuse(sw::kConditionsNotSatisfied);
  if (session != Session::kCapp) return refuse(sw::kCommandNotAllowed);
  if (file == sfi::kMetro && (c.p1 == 0 || c.p1 > class_->profile->metro_records)) {
    return refuse(sw::kRecordNotFound);
  }
  // Staged in RAM; written with the DEBIT's EEPROM transaction, or dropped with the session.
  if (!field().capp) field().capp = std::make_unique<CappCache>();
  if (file == sfi::kTravel) {
    std::copy(c.data.begin(), c.data.end(), field().capp->travel.begin());
    field().capp->travel_staged = true;
  } else {
    std::copy(c.data.begin(), c.data.end(), field().capp->metro.begin());
    field().capp->metro_id = c.p1;
  }
  field().session = Session::kCapp;
  return done({}, class_->profile->command.update_capp_us);
}

Response CpuCard::debit(const Command& c, Session session) {
  if (c.p1 != 0x01 || c.p2 != 0x00) return refuse(sw::kWrongP1P2);
  if (c.data.size() != 15) return refuse(sw::kWrongLength);
  if (!field().selected || blocked()) return refuse(sw::kConditionsNotSatisfied);
  if (session != Session::kPurchase && session != Session::kCapp) {
    return refuse(sw::kCommandNotAllowed);
  }
  const std::uint32_t terminal_seq = get_u32be(c.data, 0);
  const auto datetime = take<7>(c.data, 4);
  const auto mac1 = take<4>(c.data, 11);
  if (class_->profile->card_checks_validity && !within_validity(datetime)) {
    return refuse(sw::kConditionsNotSatisfied);
  }
  const std::uint8_t type = session == Session::kCapp ? txn::kCappPurchase : txn::kPurchase;
  const std::uint32_t amount_fen = field().session_amount_fen;
  const crypto::MacKey sespk(crypto::purchase_session_key(algorithm(), key(KeyUse::kPurchase),
                                                          field().session_random,
                                                          purse_.offline_counter, terminal_seq));
  if (!crypto::mac_equal(
          crypto::purchase_mac1(sespk, amount_fen, type, field().session_terminal, datetime),
          mac1)) {
    return refuse(sw::kMacInvalid);
  }
  const protocol::Mac4 mac2 = crypto::purchase_mac2(sespk, amount_fen);
  const protocol::Mac4 tac =
      crypto::purchase_tac(crypto::MacKey(crypto::tac_key(algorithm(), key(KeyUse::kTac))),
                           amount_fen, type, field().session_terminal, terminal_seq, datetime);

  Commit tx{purse_};
  Purse& p = tx.purse;
  const std::uint32_t from_balance_fen = std::min(amount_fen, p.balance_fen);
  p.balance_fen -= from_balance_fen;
  p.overdraft_used_fen += amount_fen - from_balance_fen;
  p.proof = Proof{type, mac2, tac};
  std::array<std::uint8_t, kLogBytes> log_record;
  encode_log(protocol::LogRecord{p.offline_counter, overdraft_limit_fen(), amount_fen, type,
                                 field().session_terminal, datetime},
             log_record.data());
  ++p.offline_counter;
  tx.writes[tx.write_count++] = FileWrite{sfi::kLog, static_cast<std::uint8_t>(kLogBytes)};
  tx.txn.log = log_record.data();
  if (session == Session::kCapp && field().capp) {
    if (field().capp->travel_staged) {
      tx.writes[tx.write_count++] =
          FileWrite{sfi::kTravel, static_cast<std::uint8_t>(kTravelBytes)};
      tx.txn.travel = field().capp->travel.data();
    }
    if (field().capp->metro_id != 0) {
      tx.writes[tx.write_count++] = FileWrite{sfi::kMetro, static_cast<std::uint8_t>(kMetroBytes)};
      tx.txn.metro_id = field().capp->metro_id;
      tx.txn.metro = field().capp->metro.data();
    }
  }
  if (!commit(tx)) return status(0);

  Bytes out;
  out.reserve(8);
  put_bytes(out, tac);
  put_bytes(out, mac2);
  return done(std::move(out), class_->profile->command.debit_us);
}

Response CpuCard::credit(const Command& c, Session session) {
  if (c.p1 != 0x00 || c.p2 != 0x00) return refuse(sw::kWrongP1P2);
  if (c.data.size() != 11) return refuse(sw::kWrongLength);
  if (!field().selected || blocked()) return refuse(sw::kConditionsNotSatisfied);
  if (session != Session::kLoad) return refuse(sw::kCommandNotAllowed);
  const auto datetime = take<7>(c.data, 0);  // date(4) || time(3)
  const auto mac2 = take<4>(c.data, 7);
  if (class_->profile->card_checks_validity && !within_validity(datetime)) {
    return refuse(sw::kConditionsNotSatisfied);
  }
  const std::uint32_t amount_fen = field().session_amount_fen;
  const crypto::MacKey seslk(crypto::load_session_key(
      algorithm(), key(KeyUse::kLoad), field().session_random, purse_.online_counter));
  if (!crypto::mac_equal(
          crypto::load_mac2(seslk, amount_fen, txn::kLoadEp, field().session_terminal, datetime),
          mac2)) {
    return refuse(sw::kMacInvalid);
  }
  Commit tx{purse_};
  Purse& p = tx.purse;
  const std::uint32_t repay = std::min(amount_fen, p.overdraft_used_fen);
  p.overdraft_used_fen -= repay;
  p.balance_fen += amount_fen - repay;
  const protocol::Mac4 tac = crypto::load_tac(
      crypto::MacKey(crypto::tac_key(algorithm(), key(KeyUse::kTac))), p.balance_fen,
      p.online_counter, amount_fen, txn::kLoadEp, field().session_terminal, datetime);
  p.proof = Proof{txn::kLoadEp, mac2, tac};
  std::array<std::uint8_t, kLogBytes> log_record;
  encode_log(protocol::LogRecord{p.online_counter, overdraft_limit_fen(), amount_fen, txn::kLoadEp,
                                 field().session_terminal, datetime},
             log_record.data());
  ++p.online_counter;
  tx.writes[tx.write_count++] = FileWrite{sfi::kLog, static_cast<std::uint8_t>(kLogBytes)};
  tx.txn.log = log_record.data();
  tx.txn.online = true;
  if (!commit(tx)) return status(0);
  return done(Bytes(tac.begin(), tac.end()), class_->profile->command.credit_us);
}

Response CpuCard::get_transaction_prove(const Command& c) {
  const std::uint8_t load_type = class_->profile->load_prove_type;
  if (c.p1 != 0x00 || (c.p2 != txn::kPurchase && c.p2 != txn::kCappPurchase && c.p2 != load_type)) {
    return refuse(sw::kWrongP1P2);
  }
  if (c.data.size() != 2) return refuse(sw::kWrongLength);
  if (!field().selected) return refuse(sw::kConditionsNotSatisfied);
  const std::uint16_t counter_after = get_u16be(c.data, 0);
  const Proof& proof = purse_.proof;
  const bool type_matches = (proof.type == txn::kLoadEp && c.p2 == load_type) ||
                            (proof.type != txn::kLoadEp && proof.type != 0 && c.p2 == proof.type);
  // The proof's transaction is the newest of its kind: its counter is the card's minus one.
  const std::uint16_t counter_now =
      proof.type == txn::kLoadEp ? purse_.online_counter : purse_.offline_counter;
  if (!type_matches || counter_now != counter_after) {
    return refuse(sw::kMacError);
  }
  Bytes out;
  out.reserve(8);
  put_bytes(out, proof.mac);
  put_bytes(out, proof.tac);
  return done(std::move(out), class_->profile->command.prove_us);
}

Response CpuCard::application_block(const Command& c, Session session) {
  if (c.p1 != 0x00 || (c.p2 != 0x00 && c.p2 != 0x01)) return refuse(sw::kWrongP1P2);
  if (c.data.size() != 4) return refuse(sw::kWrongLength);
  if (!field().selected) return refuse(sw::kConditionsNotSatisfied);
  if (session != Session::kChallenge) return refuse(sw::kNoChallenge);
  const protocol::Mac4 expected = crypto::application_block_mac(
      algorithm(), key(KeyUse::kMaintenance), field().session_random, c.p2);
  if (!crypto::mac_equal(expected, take<4>(c.data, 0))) return refuse(sw::kSmMacWrong);
  Commit lock_commit{purse_};
  lock_commit.purse.lock =
      static_cast<std::uint8_t>(c.p2 == 0x01 ? Lock::kPermanent : Lock::kTemporary);
  if (!commit(lock_commit)) return status(0);
  return done({}, class_->profile->command.application_block_us);
}

}  // namespace citycard::devices
