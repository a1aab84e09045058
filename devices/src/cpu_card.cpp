#include "citycard/devices/cpu_card.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace citycard::devices {

using protocol::Command;
using protocol::Response;
namespace sw = protocol::sw;
namespace crypto = protocol::crypto;

namespace {

constexpr std::uint8_t kClaIso = 0x00;
constexpr std::uint8_t kClaPurse = 0x80;
constexpr std::uint8_t kInsSelect = 0xA4;
constexpr std::uint8_t kInsReadBinary = 0xB0;
constexpr std::uint8_t kInsReadRecord = 0xB2;
constexpr std::uint8_t kInsInitialize = 0x50;
constexpr std::uint8_t kInsDebit = 0x54;
constexpr std::uint8_t kInsGetProve = 0x5A;
constexpr std::uint8_t kInsGetBalance = 0x5C;
constexpr std::uint8_t kP2Purse = 0x02;  // EP; 01 would be the ED (passbook), not modelled
// ISO 7816-4 "wrong parameters P1-P2: offset outside the EF"; protocol::sw lacks it.
constexpr std::uint16_t kSwOffsetOutsideFile = 0x6B00;
constexpr std::uint32_t kOverdraftMaxFen = 0xFFFFFF;  // a 3-byte field on the card
constexpr std::uint8_t kApplicationType = 0x02;       // electronic purse
constexpr std::uint8_t kApplicationVersion = 0x01;

Response status(std::uint16_t s) {
  return Response::status(s);
}
Response ok(Bytes data) {
  return Response{std::move(data), sw::kOk};
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

}  // namespace

CpuCard::CpuCard(const protocol::CardImage& image, sim::Rng rng)
    : family_(image.family),
      algorithm_(image.algorithm),
      key_version_(image.key_version),
      serial_(image.serial),
      issuer_data_(image.issuer_data),
      valid_from_(image.valid_from),
      valid_to_(image.valid_to),
      dpk_(image.dpk),
      dtk_(image.dtk),
      overdraft_limit_fen_(std::min(image.overdraft_limit_fen, kOverdraftMaxFen)),
      balance_fen_(image.balance_fen),
      rng_(rng) {
  assert(image.overdraft_limit_fen <= kOverdraftMaxFen && "overdraft limit is a 3-byte field");
}

Bytes CpuCard::process(ByteView capdu) {
  Result<Command> command = Command::parse(capdu);
  if (!command) return status(sw::kWrongLength).encode();
  return dispatch(*command).encode();
}

void CpuCard::reset() {
  selected_ = false;
  session_.reset();
}

std::vector<protocol::LogRecord> CpuCard::log() const {
  std::vector<protocol::LogRecord> out;
  out.reserve(log_count_);
  for (std::size_t i = 0; i < log_count_; ++i) {
    out.push_back(log_[(log_newest_ + kLogRecords - i) % kLogRecords]);
  }
  return out;
}

Response CpuCard::dispatch(const Command& c) {
  // A purchase session is good for the very next command only (see the header).
  const std::optional<PurchaseSession> session = std::exchange(session_, std::nullopt);
  if (c.cla == kClaIso) {
    switch (c.ins) {
      case kInsSelect:
        return select(c);
      case kInsReadBinary:
        return read_binary(c);
      case kInsReadRecord:
        return read_record(c);
      default:
        return status(sw::kInsNotSupported);
    }
  }
  if (c.cla == kClaPurse) {
    switch (c.ins) {
      case kInsGetBalance:
        return get_balance(c);
      case kInsInitialize:
        return initialize_purchase(c);
      case kInsDebit:
        return debit_purchase(c, session);
      case kInsGetProve:
        return get_transaction_prove(c);
      default:
        return status(sw::kInsNotSupported);
    }
  }
  return status(sw::kClaNotSupported);
}

Response CpuCard::select(const Command& c) {
  if (c.p1 == 0x04 && c.p2 == 0x00) {  // by DF name, first occurrence, return FCI
    if (c.data.size() < 5 || c.data.size() > 16) return status(sw::kWrongLength);
    const Bytes& aid = protocol::aid_for(family_);
    // A failed SELECT leaves the current selection as it was (ISO 7816-4).
    if (c.data != aid) return status(sw::kFileNotFound);
    selected_ = true;
    return ok(fci(aid));
  }
  if (c.p1 == 0x00 && c.p2 == 0x00) {  // by file identifier: only the MF is reachable
    if (c.data.size() != 2) return status(sw::kWrongLength);
    if (c.data[0] != 0x3F || c.data[1] != 0x00) return status(sw::kFileNotFound);
    selected_ = false;
    return ok({});
  }
  return status(sw::kWrongP1P2);
}

// File 0x15, 30 bytes. STANDARDS.md confirms the card number at offset 10 and the validity
// dates at 20/24; the rest is our reading of JT/T 978: issuer data (8) | application type (1)
// | application version (1) | application serial number (10) = 00 00 + the 8-byte serial the
// keys are diversified with | valid from (4) | valid to (4) | reserved (2).
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
  assert(f.size() == kIssuerFileBytes);
  return f;
}

Response CpuCard::read_binary(const Command& c) const {
  // Without the SFI bit, P1-P2 is an offset into the current EF, and this card keeps none.
  if ((c.p1 & 0x80) == 0) return status(sw::kCommandNotAllowed);
  if ((c.p1 & 0x60) != 0) return status(sw::kWrongP1P2);
  if (!c.data.empty()) return status(sw::kWrongLength);
  if (!selected_ || (c.p1 & 0x1F) != protocol::sfi::kIssuer) return status(sw::kFileNotFound);
  const Bytes file = issuer_file();
  if (c.p2 >= file.size()) return status(kSwOffsetOutsideFile);
  std::size_t n = file.size() - c.p2;
  if (c.le) n = std::min<std::size_t>(n, *c.le);
  const auto begin = file.begin() + c.p2;
  return ok(Bytes(begin, begin + static_cast<std::ptrdiff_t>(n)));
}

Response CpuCard::read_record(const Command& c) const {
  // P2 low bits 100: P1 is a record number; record 0 (the "current record") has no meaning
  // for a cyclic file this card addresses newest-first.
  if ((c.p2 & 0x07) != 0x04 || c.p1 == 0) return status(sw::kWrongP1P2);
  if (!c.data.empty()) return status(sw::kWrongLength);
  if (!selected_ || (c.p2 >> 3) != protocol::sfi::kLog) return status(sw::kFileNotFound);
  if (c.p1 > log_count_) return status(sw::kRecordNotFound);
  return ok(log_[(log_newest_ + kLogRecords - (c.p1 - 1u)) % kLogRecords].encode());
}

Response CpuCard::get_balance(const Command& c) const {
  if (c.p1 != 0x00 || c.p2 != kP2Purse) return status(sw::kWrongP1P2);
  if (!c.data.empty()) return status(sw::kWrongLength);
  if (!selected_) return status(sw::kConditionsNotSatisfied);
  Bytes out;
  put_u32be(out, balance_fen_);
  return ok(std::move(out));
}

std::uint32_t CpuCard::available_fen() const {
  const std::uint64_t available =
      std::uint64_t{balance_fen_} + (overdraft_limit_fen_ - overdraft_used_fen_);
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(available, UINT32_MAX));
}

Response CpuCard::initialize_purchase(const Command& c) {
  if (c.p1 != 0x01 || c.p2 != kP2Purse) return status(sw::kWrongP1P2);
  if (c.data.size() != 11) return status(sw::kWrongLength);
  if (!selected_) return status(sw::kConditionsNotSatisfied);
  if (c.data[0] != kPurchaseKeyIndex) return status(sw::kKeyIndexNotSupported);
  if (offline_counter_ == UINT16_MAX) return status(sw::kConditionsNotSatisfied);
  const std::uint32_t amount_fen = get_u32be(c.data, 1);
  if (amount_fen > available_fen()) return status(sw::kInsufficientBalance);

  protocol::Random4 random{};
  const auto r = static_cast<std::uint32_t>(rng_.next_u64());
  for (std::size_t i = 0; i < random.size(); ++i) {
    random[i] = static_cast<std::uint8_t>(r >> (24 - 8 * i));
  }
  session_ = PurchaseSession{amount_fen, take<6>(c.data, 5), random};

  Bytes out;
  out.reserve(15);
  put_u32be(out, balance_fen_);
  put_u16be(out, offline_counter_);
  put_u24be(out, overdraft_limit_fen_);
  put_u8(out, key_version_);
  put_u8(out, static_cast<std::uint8_t>(algorithm_));
  put_bytes(out, random);
  return ok(std::move(out));
}

Response CpuCard::debit_purchase(const Command& c, const std::optional<PurchaseSession>& session) {
  if (c.p1 != 0x01 || c.p2 != 0x00) return status(sw::kWrongP1P2);
  if (c.data.size() != 15) return status(sw::kWrongLength);
  if (!selected_) return status(sw::kConditionsNotSatisfied);
  if (!session) return status(sw::kCommandNotAllowed);

  const std::uint32_t terminal_seq = get_u32be(c.data, 0);
  const auto datetime = take<7>(c.data, 4);
  const auto mac1 = take<4>(c.data, 11);
  const std::uint32_t amount_fen = session->amount_fen;
  const crypto::SessionKey sespk = crypto::purchase_session_key(algorithm_, dpk_, session->random,
                                                                offline_counter_, terminal_seq);
  const protocol::Mac4 expected = crypto::purchase_mac1(sespk, amount_fen, protocol::txn::kPurchase,
                                                        session->terminal, datetime);
  if (!crypto::mac_equal(expected, mac1)) return status(sw::kMacInvalid);

  const protocol::Mac4 mac2 = crypto::purchase_mac2(sespk, amount_fen);
  const protocol::Mac4 tac =
      crypto::purchase_tac(crypto::tac_key(algorithm_, dtk_), amount_fen, protocol::txn::kPurchase,
                           session->terminal, terminal_seq, datetime);
  const std::uint32_t from_balance_fen = std::min(amount_fen, balance_fen_);
  const protocol::LogRecord record{offline_counter_,         overdraft_limit_fen_, amount_fen,
                                   protocol::txn::kPurchase, session->terminal,    datetime};
  const auto slot =
      static_cast<std::uint8_t>(log_count_ == 0 ? 0 : (log_newest_ + 1) % kLogRecords);

  // Commit: everything above could still refuse; nothing below can.
  balance_fen_ -= from_balance_fen;
  overdraft_used_fen_ += amount_fen - from_balance_fen;
  log_[slot] = record;
  log_newest_ = slot;
  log_count_ = static_cast<std::uint8_t>(std::min<std::size_t>(log_count_ + 1u, kLogRecords));
  proof_ = Proof{offline_counter_, protocol::txn::kPurchase, mac2, tac};
  ++offline_counter_;

  Bytes out;
  out.reserve(8);
  put_bytes(out, tac);
  put_bytes(out, mac2);
  return ok(std::move(out));
}

Response CpuCard::get_transaction_prove(const Command& c) const {
  if (c.p1 != 0x00 || (c.p2 != protocol::txn::kPurchase && c.p2 != protocol::txn::kCappPurchase)) {
    return status(sw::kWrongP1P2);
  }
  if (c.data.size() != 2) return status(sw::kWrongLength);
  if (!selected_) return status(sw::kConditionsNotSatisfied);
  const std::uint16_t counter_after = get_u16be(c.data, 0);
  if (!proof_ || proof_->type != c.p2 ||
      static_cast<std::uint16_t>(proof_->counter + 1) != counter_after) {
    return status(sw::kMacError);
  }
  Bytes out;
  out.reserve(8);
  put_bytes(out, proof_->mac2);
  put_bytes(out, proof_->tac);
  return ok(std::move(out));
}

}  // namespace citycard::devices
