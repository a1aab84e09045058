#include "citycard/devices/purchase.h"

#include <algorithm>
#include <utility>

#include "citycard/devices/cpu_card.h"
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
  }
  return "unknown";
}

namespace {

// Offset of the 8-byte card application serial in file 0x15 (see cpu_card.cpp for the
// layout we read JT/T 978 to have); the diversification data is the file's first 8 bytes.
constexpr std::size_t kSerialOffset = 12;
constexpr std::size_t kInitReplyBytes = 15;
constexpr std::size_t kDebitReplyBytes = 8;
constexpr std::size_t kProveReplyBytes = 8;

PurchaseResult refused(Refusal refusal, std::uint16_t sw, std::string detail) {
  PurchaseResult r;
  r.refusal = refusal;
  r.sw = sw;
  r.detail = std::move(detail);
  return r;
}

// A card step that got no answer, or a status word other than 9000.
PurchaseResult card_refusal(const char* step, const Result<Response>& r) {
  if (!r) {
    const Refusal why = r.status().code() == Errc::kTorn ? Refusal::kTorn : Refusal::kCardError;
    return refused(why, 0, std::string(step) + ": " + r.status().to_string());
  }
  Refusal why = Refusal::kCardError;
  switch (r->sw) {
    case sw::kBlockedSelected:
    case sw::kBlockedTerminated:
    case sw::kAppBlockedPermanently:
      why = Refusal::kCardBlocked;
      break;
    case sw::kInsufficientBalance:
      why = Refusal::kInsufficientBalance;
      break;
    default:
      break;
  }
  return refused(why, r->sw, std::string(step) + " answered " + sw_text(r->sw));
}

PurchaseResult wrong_shape(const char* step, const Response& r, std::size_t expected_bytes) {
  return refused(Refusal::kCardError, r.sw,
                 std::string(step) + " answered " + std::to_string(r.data.size()) +
                     " bytes of data, expected " + std::to_string(expected_bytes));
}

PurchaseResult sam_refusal(const char* step, const Status& s) {
  const Refusal why = s.code() == Errc::kBadMac ? Refusal::kMac2Invalid : Refusal::kSamError;
  return refused(why, s.code() == Errc::kBadMac ? sw::kMacInvalid : 0,
                 std::string(step) + ": " + s.to_string());
}

}  // namespace

Status PurchaseEngine::open() {
  Result<protocol::TerminalId> id = sam_.open();
  if (!id) return id.status();
  terminal_ = *id;
  return Status::ok();
}

PurchaseResult PurchaseEngine::purchase(CardLink& card, const PurchaseRequest& request) {
  if (!is_open()) {
    if (Status s = open(); !s) return sam_refusal("PSAM sign-on", s);
  }

  const Bytes& aid = protocol::aid_for(protocol::Family::kJtt978);
  Result<Response> select = card.transceive(Command{0x00, 0xA4, 0x04, 0x00, aid, 256});
  if (select && select->sw == sw::kFileNotFound) {
    return refused(Refusal::kCardNotSupported, select->sw, "SELECT: no JT/T 978 application");
  }
  if (!select || !select->ok()) return card_refusal("SELECT", select);

  const auto file_bytes = static_cast<std::uint16_t>(CpuCard::kIssuerFileBytes);
  Result<Response> file = card.transceive(Command{
      0x00, 0xB0, static_cast<std::uint8_t>(0x80 | protocol::sfi::kIssuer), 0x00, {}, file_bytes});
  if (!file || !file->ok()) return card_refusal("READ BINARY 0x15", file);
  if (file->data.size() != file_bytes) return wrong_shape("READ BINARY 0x15", *file, file_bytes);
  const auto serial = take<8>(file->data, kSerialOffset);
  const auto diversification_data = take<8>(file->data, 0);

  const auto grey = std::find_if(grey_.begin(), grey_.end(),
                                 [&](const Purchase& p) { return p.card_serial == serial; });
  if (grey != grey_.end()) {
    if (auto done = recover(card, static_cast<std::size_t>(grey - grey_.begin()))) return *done;
  }

  Bytes init_data;
  put_u8(init_data, CpuCard::kPurchaseKeyIndex);
  put_u32be(init_data, request.amount_fen);
  put_bytes(init_data, *terminal_);
  Result<Response> init =
      card.transceive(Command{0x80, 0x50, 0x01, 0x02, std::move(init_data), kInitReplyBytes});
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
  p.type = protocol::txn::kPurchase;
  p.terminal = *terminal_;
  p.datetime = request.datetime;
  resolve_grey(serial, p.card_counter);

  Result<Mac1Output> mac1 = sam_.mac1_for_purchase(
      Mac1Input{take<4>(ir, 11), p.card_counter, p.amount_fen, p.type, p.datetime, p.key_version,
                p.algorithm_id, serial, diversification_data});
  if (!mac1) return sam_refusal("PSAM MAC1", mac1.status());
  p.terminal_seq = mac1->terminal_seq;

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
