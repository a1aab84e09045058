#include "citycard/devices/issuing_desk.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "citycard/devices/blacklist_lock.h"
#include "citycard/devices/host_session.h"
#include "citycard/devices/purchase.h"
#include "sw_text.h"

namespace citycard::devices {

namespace pw = protocol::wire;
namespace wire = citycard::wire;
using protocol::Command;
using protocol::Response;
using wire::DeskReply;
using wire::DeskRequest;
using wire::Envelope;

namespace {

Status desk_status(const wire::ErrorReply& error) {
  switch (error.code()) {
    case wire::DESK_NOT_SIGNED_IN:
      return Status(Errc::kPermissionDenied, "DESK_NOT_SIGNED_IN: " + error.message());
    case wire::DESK_OP_REUSED:
      return Status(Errc::kConflict, "DESK_OP_REUSED: " + error.message());
    default:
      return status_of_error(error);
  }
}

// Lost answers: the request may or may not have been done.
bool answer_lost(const Status& s) {
  return s.code() == Errc::kTimeout || s.code() == Errc::kUnavailable;
}

template <std::size_t N>
bool copy_field(const std::string& field, std::array<std::uint8_t, N>& out) {
  if (field.size() != N) return false;
  std::copy(field.begin(), field.end(), out.begin());
  return true;
}

Result<DeskCardRecord> record_of(const wire::DeskCardState& s) {
  DeskCardRecord r;
  const auto alg =
      s.algorithm_id() <= 0xFF
          ? protocol::crypto::algorithm_from_id(static_cast<std::uint8_t>(s.algorithm_id()))
          : std::nullopt;
  if (!pw::to_serial(s.card_serial(), r.serial) || s.card_type() > 3 || !alg ||
      s.key_version() > 0xFF) {
    return Status(Errc::kMalformed, "desk card record: serial 8 bytes, known type and algorithm");
  }
  r.card_number = s.card_number();
  r.status = s.status();
  r.status_name = s.status_name();
  r.balance_fen = s.balance_fen();
  r.deposit_fen = s.deposit_fen();
  r.named = s.named();
  r.card_type = static_cast<protocol::CardType>(s.card_type());
  r.valid_from_yyyymmdd = static_cast<int>(s.valid_from());
  r.valid_to_yyyymmdd = static_cast<int>(s.valid_to());
  if (!s.replaced_by().empty()) {
    protocol::Serial8 by{};
    if (!pw::to_serial(s.replaced_by(), by)) {
      return Status(Errc::kMalformed, "desk card record: replaced_by must be 8 bytes");
    }
    r.replaced_by = by;
  }
  r.blacklisted = s.blacklisted();
  r.key_version = static_cast<std::uint8_t>(s.key_version());
  r.algorithm = *alg;
  return r;
}

Result<protocol::CardImage> image_of(const wire::DeskCardImage& m) {
  protocol::CardImage im;
  const auto alg =
      m.algorithm_id() <= 0xFF
          ? protocol::crypto::algorithm_from_id(static_cast<std::uint8_t>(m.algorithm_id()))
          : std::nullopt;
  const bool family_ok = m.family() == static_cast<std::uint32_t>(protocol::Family::kJtt978) ||
                         m.family() == static_cast<std::uint32_t>(protocol::Family::kCjt166);
  if (!copy_field(m.serial(), im.serial) || !copy_field(m.dpk(), im.dpk) ||
      !copy_field(m.dlk(), im.dlk) || !copy_field(m.dtk(), im.dtk) ||
      !copy_field(m.damk(), im.damk) || !copy_field(m.valid_from(), im.valid_from) ||
      !copy_field(m.valid_to(), im.valid_to) || !copy_field(m.issuer_data(), im.issuer_data) ||
      !alg || !family_ok || m.card_type() > 3 || m.key_version() > 0xFF || m.balance_fen() < 0 ||
      m.balance_fen() > 0xFFFF'FFFFLL || m.overdraft_limit_fen() < 0 ||
      m.overdraft_limit_fen() > 0xFFFF'FFFFLL || m.online_counter() > 0xFFFF ||
      m.offline_counter() > 0xFFFF) {
    return Status(Errc::kMalformed,
                  "card image: serial 8, keys 16, dates 4, issuer data 8 bytes; known family, "
                  "type and algorithm; amounts and counters within the card's sizes");
  }
  im.family = static_cast<protocol::Family>(m.family());
  im.card_number = m.card_number();
  im.card_type = static_cast<protocol::CardType>(m.card_type());
  im.key_version = static_cast<std::uint8_t>(m.key_version());
  im.algorithm = *alg;
  im.balance_fen = static_cast<std::uint32_t>(m.balance_fen());
  im.overdraft_limit_fen = static_cast<std::uint32_t>(m.overdraft_limit_fen());
  im.online_counter = static_cast<std::uint16_t>(m.online_counter());
  im.offline_counter = static_cast<std::uint16_t>(m.offline_counter());
  return im;
}

bool pin_ok(const std::string& pin) {
  return pin.size() >= 4 && pin.size() <= 12 &&
         std::all_of(pin.begin(), pin.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

IssuingDesk::IssuingDesk(IssuingDeskOptions options, sim::Channel& channel, sim::Rng rng,
                         SamClient* sam)
    : options_(std::move(options)),
      channel_(channel),
      rng_(rng),
      sam_(sam),
      load_client_(OnlineLoadOptions{options_.terminal_id, options_.pump, options_.pump_rounds_max},
                   channel),
      point_(options_.recharge, load_client_, options_.terminal_id),
      next_op_no_(std::max<std::uint64_t>(options_.first_op_no, 1)) {}

IssuingDesk::~IssuingDesk() = default;

Result<DeskReply> IssuingDesk::call(DeskRequest request) {
  if (!options_.pump) return Status(Errc::kInvalidArgument, "issuing desk needs a pump");
  if (request.terminal_id().empty()) request.set_terminal_id(pw::field(options_.terminal_id));
  if (request.session().empty() && !request.has_sign_in()) request.set_session(session_);
  Envelope e;
  const std::uint64_t id = next_request_id_++;
  e.set_request_id(id);
  *e.mutable_desk_request() = std::move(request);
  ++requests_;
  Result<Envelope> r = pumped_call(channel_, e, options_.pump, options_.pump_rounds_max);
  if (!r) return r.status();
  if (r->has_error()) return desk_status(r->error());
  if (!r->has_desk_reply()) return Status(Errc::kMalformed, "answer is not a desk reply");
  return std::move(*r->mutable_desk_reply());
}

Result<DeskReply> IssuingDesk::change(DeskRequest request) {
  const std::string op = request.SerializeAsString();
  if (unanswered_ && unanswered_->second == op) {
    request.set_op_no(unanswered_->first);
  } else {
    request.set_op_no(next_op_no_++);
  }
  unanswered_.reset();
  for (std::size_t attempt = 0;; ++attempt) {
    auto r = call(request);
    if (r.is_ok() || !answer_lost(r.status())) return r;
    if (attempt >= options_.answer_retries_max) {
      unanswered_.emplace(request.op_no(), op);
      return r;
    }
    ++answer_retries_;
  }
}

Result<DeskReply> IssuingDesk::send(DeskRequest request) {
  return call(std::move(request));
}

Status IssuingDesk::sign_in(const std::string& username, const std::string& password) {
  DeskRequest m;
  m.mutable_sign_in()->set_username(username);
  m.mutable_sign_in()->set_password(password);
  auto r = call(std::move(m));
  if (!r) return r.status();
  if (!r->has_signed_in() || r->signed_in().session().size() != 16) {
    return Status(Errc::kMalformed, "sign-in answer without a 16-byte session");
  }
  session_ = r->signed_in().session();
  return Status::ok();
}

Status IssuingDesk::sign_out() {
  DeskRequest m;
  m.mutable_sign_out();
  auto r = call(std::move(m));
  session_.clear();  // gone here either way; the backend's lapses by itself
  return r.status();
}

Result<IssuedCard> IssuingDesk::personalise(const DeskReply& reply, const std::string& pin) {
  if (!reply.has_issued()) return Status(Errc::kMalformed, "answer without a card image");
  auto image = image_of(reply.issued());
  if (!image) return image.status();
  if (!pin.empty()) image->pin = pin;
  IssuedCard out{
      .image = *image,
      .card = CpuCard(*image, rng_.fork("card " + std::to_string(++cards_personalised_))),
      .replayed = reply.replayed()};
  if (reply.has_old_card()) {
    auto old = record_of(reply.old_card());
    if (!old) return old.status();
    out.old_card = std::move(old).value();
  }
  return out;
}

Result<IssuedCard> IssuingDesk::issue(const DeskIssueSpec& spec) {
  if (!spec.pin.empty() && !pin_ok(spec.pin)) {
    return Status(Errc::kInvalidArgument, "PIN must be 4 to 12 digits");
  }
  DeskRequest m;
  wire::DeskIssue* is = m.mutable_issue();
  is->set_card_type(static_cast<std::uint32_t>(spec.card_type));
  is->set_opening_value_fen(spec.opening_value_fen);
  is->set_deposit_fen(spec.deposit_fen);
  is->set_valid_from(static_cast<std::uint32_t>(std::max(spec.valid_from_yyyymmdd, 0)));
  is->set_valid_to(static_cast<std::uint32_t>(std::max(spec.valid_to_yyyymmdd, 0)));
  is->set_family(static_cast<std::uint32_t>(spec.family));
  is->set_algorithm_id(static_cast<std::uint32_t>(spec.algorithm));
  if (spec.holder) {
    wire::DeskHolder* h = is->mutable_holder();
    h->set_name(spec.holder->name);
    h->set_id_number(spec.holder->id_number);
    h->set_phone(spec.holder->phone);
    h->set_email(spec.holder->email);
    h->set_notify(spec.holder->notify);
  }
  auto r = change(std::move(m));
  if (!r) return r.status();
  return personalise(*r, spec.pin);
}

Result<std::pair<protocol::Serial8, std::uint32_t>> IssuingDesk::read_card(
    CardLink& card, protocol::Family* family) {
  PurchaseResult refusal;
  auto id =
      identify_card(card, true, true, options_.recharge.load.cjt166_city_code_offset, &refusal);
  if (!id) return Status(Errc::kRejected, "card in the field: " + refusal.detail);
  auto b = card.transceive(Command{0x80, 0x5C, 0x00, 0x02, {}, std::uint16_t{4}});
  if (!b) return Status(b.status().code(), "GET BALANCE: " + b.status().message());
  if (!b->ok() || b->data.size() != 4) {
    return Status(Errc::kRejected, "GET BALANCE answered " + sw_text(b->sw));
  }
  if (family != nullptr) *family = id->family;
  return std::pair{id->serial, get_u32be(b->data, 0)};
}

bool IssuingDesk::lock(CardLink& card, const DeskCardRecord& record, protocol::Family family) {
  if (sam_ == nullptr) return false;
  if (Status s = sam_->select_application(family); !s) return false;
  return lock_application(card, *sam_, record.serial, record.algorithm, record.key_version, true)
      .ok();
}

Result<DeskOutcome> IssuingDesk::cancel(CardLink& card) {
  protocol::Family family{};
  auto read = read_card(card, &family);
  if (!read) return read.status();
  DeskRequest m;
  m.mutable_cancel()->set_card_serial(pw::field(read->first));
  auto r = change(std::move(m));
  if (!r) return r.status();
  if (!r->has_card()) return Status(Errc::kMalformed, "cancel answer without the card");
  auto rec = record_of(r->card());
  if (!rec) return rec.status();
  DeskOutcome out{*rec, false, r->replayed()};
  out.locked = lock(card, out.card, family);
  return out;
}

OnlineLoad IssuingDesk::recharge(CardLink& card, const protocol::Serial8& serial,
                                 const std::string& order_id, std::uint32_t amount_fen,
                                 const protocol::DateTime7& datetime) {
  return point_.recharge(card, serial, order_id, amount_fen, datetime);
}

Result<DeskCardRecord> IssuingDesk::query(const protocol::Serial8& serial) {
  DeskRequest m;
  m.mutable_query()->set_card_serial(pw::field(serial));
  auto r = call(std::move(m));
  if (!r) return r.status();
  if (!r->has_card()) return Status(Errc::kMalformed, "query answer without the card");
  return record_of(r->card());
}

Result<DeskBalance> IssuingDesk::balance(CardLink& card) {
  auto read = read_card(card, nullptr);
  if (!read) return read.status();
  auto rec = query(read->first);
  if (!rec) return rec.status();
  return DeskBalance{read->second, std::move(rec).value()};
}

Result<DeskRefund> IssuingDesk::refund(CardLink& card) {
  protocol::Family family{};
  auto read = read_card(card, &family);
  if (!read) return read.status();
  DeskRequest m;
  m.mutable_refund()->set_card_serial(pw::field(read->first));
  m.mutable_refund()->set_card_balance_fen(read->second);
  auto r = change(std::move(m));
  if (!r) return r.status();
  if (!r->has_refunded()) return Status(Errc::kMalformed, "refund answer without the refund");
  auto rec = record_of(r->refunded().card());
  if (!rec) return rec.status();
  DeskRefund out;
  out.balance_fen = r->refunded().balance_fen();
  out.deposit_fen = r->refunded().deposit_fen();
  out.in_flight_fen = r->refunded().in_flight_fen();
  out.card = std::move(rec).value();
  out.replayed = r->replayed();
  out.locked = lock(card, out.card, family);
  return out;
}

Result<IssuedCard> IssuingDesk::replace(const protocol::Serial8& old_serial, CardLink* old_in_field,
                                        const std::string& pin) {
  if (!pin.empty() && !pin_ok(pin))
    return Status(Errc::kInvalidArgument, "PIN must be 4 to 12 digits");
  protocol::Family family{};
  if (old_in_field != nullptr) {
    auto read = read_card(*old_in_field, &family);
    if (!read) return read.status();
    if (read->first != old_serial) {
      return Status(Errc::kRejected, "the card in the field is not the card to replace");
    }
  }
  DeskRequest m;
  m.mutable_replace()->set_card_serial(pw::field(old_serial));
  auto r = change(std::move(m));
  if (!r) return r.status();
  auto issued = personalise(*r, pin);
  if (!issued) return issued.status();
  if (old_in_field != nullptr && issued->old_card) {
    issued->old_locked = lock(*old_in_field, *issued->old_card, family);
  }
  return issued;
}

Result<DeskOutcome> IssuingDesk::report_lost(const protocol::Serial8& serial) {
  DeskRequest m;
  m.mutable_report_lost()->set_card_serial(pw::field(serial));
  return card_state_change(std::move(m));
}

Result<DeskOutcome> IssuingDesk::report_found(const protocol::Serial8& serial) {
  DeskRequest m;
  m.mutable_report_found()->set_card_serial(pw::field(serial));
  return card_state_change(std::move(m));
}

Result<DeskOutcome> IssuingDesk::card_state_change(DeskRequest request) {
  auto r = change(std::move(request));
  if (!r) return r.status();
  if (!r->has_card()) return Status(Errc::kMalformed, "answer without the card");
  auto rec = record_of(r->card());
  if (!rec) return rec.status();
  return DeskOutcome{std::move(rec).value(), false, r->replayed()};
}

}  // namespace citycard::devices
