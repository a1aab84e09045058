#include "citycard/devices/purchase.h"

#include <algorithm>
#include <utility>

#include "citycard/devices/blacklist_lock.h"
#include "citycard/devices/cpu_card.h"
#include "citycard/protocol/crypto.h"
#include "refusals.h"
#include "sw_text.h"

namespace citycard::devices {

using protocol::Command;
using protocol::Response;
namespace sw = protocol::sw;

const char* refusal_name(Refusal refusal) {
  switch (refusal) {
    case Refusal::kCardNotSupported:
      return "card_not_supported";
    case Refusal::kCardBlocked:
      return "card_blocked";
    case Refusal::kInsufficientBalance:
      return "insufficient_balance";
    case Refusal::kCardError:
      return "card_error";
    case Refusal::kTorn:
      return "torn";
    case Refusal::kSamError:
      return "sam_error";
    case Refusal::kMac2Invalid:
      return "mac2_invalid";
    case Refusal::kQueueFull:
      return "queue_full";
    case Refusal::kCardExpired:
      return "card_expired";
    case Refusal::kBlacklisted:
      return "blacklisted";
    case Refusal::kHostRefused:
      return "host_refused";
  }
  return "unknown";
}

namespace {

// Offset of the 8-byte card application serial in file 0x15 (see cpu_card.cpp for the
// layout we read JT/T 978 to have); the diversification data is the file's first 8 bytes.
constexpr std::size_t kSerialOffset = 12;
constexpr std::size_t kValidFromOffset = 20;
constexpr std::size_t kValidToOffset = 24;
constexpr std::size_t kInitReplyBytes = 15;
constexpr std::size_t kDebitReplyBytes = 8;
constexpr std::size_t kProveReplyBytes = 8;
constexpr std::uint8_t kP1Purchase = 0x01;
constexpr std::uint8_t kP1Capp = 0x03;

}  // namespace

Result<CardIdentity> identify_card(CardLink& card, bool accept_jtt978, bool accept_cjt166,
                                   std::size_t cjt166_city_code_offset, PurchaseResult* refusal) {
  auto fail = [&](PurchaseResult r) {
    *refusal = std::move(r);
    return Result<CardIdentity>(Errc::kRejected, refusal->detail);
  };
  CardIdentity id;
  std::optional<Result<Response>> select;
  for (protocol::Family f : {protocol::Family::kJtt978, protocol::Family::kCjt166}) {
    if (!(f == protocol::Family::kJtt978 ? accept_jtt978 : accept_cjt166)) continue;
    select = card.transceive(Command{0x00, 0xA4, 0x04, 0x00, protocol::aid_for(f), 256});
    id.family = f;
    if (!*select || (*select)->sw != sw::kFileNotFound) break;
  }
  if (!select) {
    return fail(refused(Refusal::kCardNotSupported, 0, "the terminal accepts no family"));
  }
  if (*select && (*select)->sw == sw::kFileNotFound) {
    return fail(refused(Refusal::kCardNotSupported, (*select)->sw,
                        "SELECT: no application this terminal accepts"));
  }
  if (!*select || !(*select)->ok()) return fail(card_refusal("SELECT", *select));

  const auto file_bytes = static_cast<std::uint16_t>(CpuCard::kIssuerFileBytes);
  Result<Response> file = card.transceive(Command{
      0x00, 0xB0, static_cast<std::uint8_t>(0x80 | protocol::sfi::kIssuer), 0x00, {}, file_bytes});
  if (!file || !file->ok()) return fail(card_refusal("READ BINARY 0x15", file));
  if (file->data.size() != file_bytes) {
    return fail(wrong_shape("READ BINARY 0x15", *file, file_bytes));
  }
  id.serial = take<8>(file->data, kSerialOffset);
  id.valid_from = take<4>(file->data, kValidFromOffset);
  id.valid_to = take<4>(file->data, kValidToOffset);
  if (id.family == protocol::Family::kJtt978) {
    id.diversification_data = take<8>(file->data, 0);
  } else {
    // City code | FF 00 00 00 00 00 (STANDARDS.md); the city code's place is an option.
    id.diversification_data = {file->data[cjt166_city_code_offset],
                               file->data[cjt166_city_code_offset + 1],
                               0xFF,
                               0,
                               0,
                               0,
                               0,
                               0};
  }
  return id;
}

bool within_validity(const CardIdentity& card, const protocol::DateTime7& dt) {
  const std::array<std::uint8_t, 4> date{dt[0], dt[1], dt[2], dt[3]};
  return date >= card.valid_from && date <= card.valid_to;
}

Status PurchaseEngine::open() {
  Result<protocol::TerminalId> id = sam_.open();
  if (!id) return id.status();
  terminal_ = *id;
  sam_family_ = protocol::Family::kJtt978;  // open() selects 8011
  return Status::ok();
}

Status PurchaseEngine::select_sam_application(protocol::Family family) {
  if (family == sam_family_) return Status::ok();
  if (Status s = sam_.select_application(family); !s) return s;
  sam_family_ = family;
  return Status::ok();
}

PurchaseResult PurchaseEngine::purchase(CardLink& card, const PurchaseRequest& request) {
  const std::int64_t start_us = card.elapsed_us() + sam_.elapsed_us();
  PurchaseResult r = run(card, request);
  r.duration_us = card.elapsed_us() + sam_.elapsed_us() - start_us;
  return r;
}

PurchaseResult PurchaseEngine::run(CardLink& card, const PurchaseRequest& request) {
  if (!is_open()) {
    if (Status s = open(); !s) return sam_refusal("PSAM sign-on", s);
  }
  CITYCARD_CHECK(options_.cjt166_city_code_offset + 2 <= CpuCard::kIssuerFileBytes,
                 "the city code lies within file 0x15");

  PurchaseResult refusal;
  Result<CardIdentity> id = identify_card(card, options_.accept_jtt978, options_.accept_cjt166,
                                          options_.cjt166_city_code_offset, &refusal);
  if (!id) return refusal;
  const protocol::Serial8& serial = id->serial;

  const auto grey = std::find_if(grey_.begin(), grey_.end(),
                                 [&](const Purchase& p) { return p.card_serial == serial; });
  if (grey != grey_.end()) {
    if (auto done = recover(card, static_cast<std::size_t>(grey - grey_.begin()))) return *done;
  }
  if (blacklist_ && blacklist_(serial)) return lock_blacklisted(card, serial);
  if (options_.check_validity && !within_validity(*id, request.datetime)) {
    return refused(Refusal::kCardExpired, 0, "outside the card's validity dates");
  }

  const bool composite = !request.capp_updates.empty();
  Bytes init_data;
  put_u8(init_data, CpuCard::kPurchaseKeyIndex);
  put_u32be(init_data, request.amount_fen);
  put_bytes(init_data, *terminal_);
  Result<Response> init = card.transceive(Command{0x80, 0x50, composite ? kP1Capp : kP1Purchase,
                                                  0x02, std::move(init_data), kInitReplyBytes});
  if (!init || !init->ok()) return card_refusal("INITIALIZE FOR PURCHASE", init);
  if (init->data.size() != kInitReplyBytes) {
    return wrong_shape("INITIALIZE FOR PURCHASE", *init, kInitReplyBytes);
  }
  const ByteView ir = init->data;
  Purchase p;
  p.card_serial = serial;
  p.balance_before_fen = get_u32be(ir, 0);
  p.card_counter = get_u16be(ir, 4);
  p.key_version = ir[9];
  p.algorithm_id = ir[10];
  p.amount_fen = request.amount_fen;
  p.type = composite ? protocol::txn::kCappPurchase : protocol::txn::kPurchase;
  p.terminal = *terminal_;
  p.datetime = request.datetime;
  resolve_grey(serial, p.card_counter);

  if (Status s = select_sam_application(id->family); !s) return sam_refusal("PSAM SELECT", s);
  Result<Mac1Output> mac1 = sam_.mac1_for_purchase(
      Mac1Input{take<4>(ir, 11), p.card_counter, p.amount_fen, p.type, p.datetime, p.key_version,
                p.algorithm_id, serial, id->diversification_data});
  if (!mac1) return sam_refusal("PSAM MAC1", mac1.status());
  p.terminal_seq = mac1->terminal_seq;

  for (const CappUpdate& u : request.capp_updates) {
    Result<Response> update = card.transceive(Command{
        0x80, 0xDC, u.record_id, static_cast<std::uint8_t>(u.sfi << 3), u.record, std::nullopt});
    if (!update || !update->ok()) return card_refusal("UPDATE CAPP DATA CACHE", update);
  }

  Bytes debit_data;
  put_u32be(debit_data, p.terminal_seq);
  put_bytes(debit_data, p.datetime);
  put_bytes(debit_data, mac1->mac1);
  Result<Response> debit =
      card.transceive(Command{0x80, 0x54, 0x01, 0x00, std::move(debit_data), kDebitReplyBytes});
  if (!debit) {
    keep_grey(p);  // the card may have committed the debit before its answer was lost
    return card_refusal("DEBIT FOR PURCHASE", debit);
  }
  if (!debit->ok()) return card_refusal("DEBIT FOR PURCHASE", debit);
  if (debit->data.size() != kDebitReplyBytes) {
    keep_grey(p);  // 9000 says the debit happened; its proof can still be fetched
    return wrong_shape("DEBIT FOR PURCHASE", *debit, kDebitReplyBytes);
  }
  p.tac = take<4>(debit->data, 0);
  if (Status s = sam_.verify_mac2(take<4>(debit->data, 4)); !s) {
    return sam_refusal("PSAM verify MAC2", s);
  }

  PurchaseResult done;
  done.purchase = p;
  return done;
}

PurchaseResult PurchaseEngine::lock_blacklisted(CardLink& card, const protocol::Serial8& serial) {
  // INITIALIZE with amount 0 tells the card's key version and algorithm, which the PSAM needs
  // for 801A; it changes nothing on the card.
  Bytes init_data;
  put_u8(init_data, CpuCard::kPurchaseKeyIndex);
  put_u32be(init_data, 0);
  put_bytes(init_data, *terminal_);
  Result<Response> init = card.transceive(
      Command{0x80, 0x50, kP1Purchase, 0x02, std::move(init_data), kInitReplyBytes});
  if (!init || !init->ok()) return card_refusal("INITIALIZE (blacklist lock)", init);
  if (init->data.size() != kInitReplyBytes) {
    return wrong_shape("INITIALIZE (blacklist lock)", *init, kInitReplyBytes);
  }
  const std::optional<protocol::crypto::Algorithm> alg =
      protocol::crypto::algorithm_from_id(init->data[10]);
  if (!alg) return refused(Refusal::kCardError, 0, "unknown algorithm id of a blacklisted card");
  PurchaseResult locked =
      lock_application(card, sam_, serial, *alg, init->data[9], options_.blacklist_lock_permanent);
  if (!locked.ok()) return locked;
  return refused(Refusal::kBlacklisted, 0, "blacklisted card locked");
}

std::optional<PurchaseResult> PurchaseEngine::recover(CardLink& card, std::size_t grey_index) {
  const Purchase& grey = grey_[grey_index];
  // The proof is asked for by the card's counter after the purchase (STANDARDS.md).
  Bytes counter_after;
  put_u16be(counter_after, static_cast<std::uint16_t>(grey.card_counter + 1));
  Result<Response> prove = card.transceive(
      Command{0x80, 0x5A, 0x00, grey.type, std::move(counter_after), kProveReplyBytes});
  if (!prove) return card_refusal("GET TRANSACTION PROVE", prove);
  if (!prove->ok() || prove->data.size() != kProveReplyBytes) {
    return std::nullopt;  // no proof: INITIALIZE's counter will say what happened
  }
  PurchaseResult done;
  done.recovered = true;
  done.purchase = grey;
  done.purchase.tac = take<4>(prove->data, 4);
  grey_.erase(grey_.begin() + static_cast<std::ptrdiff_t>(grey_index));
  ++grey_counters_.completed;
  return done;
}

void PurchaseEngine::keep_grey(const Purchase& grey) {
  // A card has at most one grey record: an older one was resolved at this tap's INITIALIZE.
  ++grey_counters_.recorded;
  if (grey_.size() == kGreyRecordsMax) {
    grey_.erase(grey_.begin());
    ++grey_counters_.unresolved;
  }
  grey_.push_back(grey);
}

void PurchaseEngine::resolve_grey(const protocol::Serial8& serial, std::uint16_t card_counter_now) {
  const auto it = std::find_if(grey_.begin(), grey_.end(),
                               [&](const Purchase& p) { return p.card_serial == serial; });
  if (it == grey_.end()) return;
  if (card_counter_now == it->card_counter) {
    ++grey_counters_.cleared;
  } else {
    ++grey_counters_.unresolved;
  }
  grey_.erase(it);
}

}  // namespace citycard::devices
