#include "citycard/devices/pos_terminal.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "citycard/devices/fare_policy.h"
#include "citycard/devices/host_session.h"
#include "citycard/protocol/apdu.h"

namespace citycard::devices {

using protocol::Command;
using protocol::Response;

MerchantPos::MerchantPos(PosConfig config, Psam& psam, const sim::Clock& clock,
                         sim::Channel& channel, LogStorage& storage)
    : config_(std::move(config)),
      core_(config_.core, psam, clock, channel, storage),
      psam_(psam),
      channel_(channel) {
  template_.set_route("pos");
  template_.set_vehicle(config_.merchant_id);
}

namespace {

// "123456" -> 12 34 56; an odd count is padded with F (cpu_card.h VERIFY).
Bytes pin_bcd(const std::string& digits) {
  Bytes out;
  for (std::size_t i = 0; i < digits.size(); i += 2) {
    const std::uint8_t hi = static_cast<std::uint8_t>(digits[i] - '0');
    const std::uint8_t lo =
        i + 1 < digits.size() ? static_cast<std::uint8_t>(digits[i + 1] - '0') : 0x0F;
    out.push_back(static_cast<std::uint8_t>(hi << 4 | lo));
  }
  return out;
}

bool digits_only(const std::string& s) {
  return !s.empty() && s.size() <= 12 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

Status MerchantPos::verify_pin(CardLink& card, const std::string& pin, SaleResult* refusal) {
  if (!digits_only(pin)) {
    refusal->local = LocalRefusal::kWrongPin;
    refusal->detail = "PIN must be 1..12 digits";
    return Status(Errc::kRejected, refusal->detail);
  }
  Result<Response> r = card.transceive(Command{0x00, 0x20, 0x00, 0x00, pin_bcd(pin), {}});
  if (!r) {
    refusal->refusal = Refusal::kTorn;
    refusal->detail = "VERIFY: " + r.status().message();
    return r.status();
  }
  if (!r->ok()) {
    ++wrong_pins_;
    refusal->local = LocalRefusal::kWrongPin;
    refusal->sw = r->sw;
    refusal->detail = (r->sw & 0xFFF0) == 0x63C0
                          ? "wrong PIN, " + std::to_string(r->sw & 0x0F) + " tries left"
                          : "PIN refused (blocked?)";
    return Status(Errc::kRejected, refusal->detail);
  }
  return Status::ok();
}

SaleResult MerchantPos::purchase(CardLink& card, std::uint32_t price_fen, const std::string& pin) {
  BudgetLink link(card, config_.core.budget);
  SaleResult result;
  Result<CardFacts> facts = core_.read_facts(link, std::nullopt, &result);
  if (!facts) return core_.refuse(std::move(result));
  if (config_.require_pin && !verify_pin(link, pin, &result))
    return core_.refuse(std::move(result));
  Fare fare;
  fare.full_fen = price_fen;
  fare.charged_fen = apply_discount_bp(price_fen, config_.discount_bp);
  SaleResult r = core_.sell(link, PurchaseRequest{fare.charged_fen, core_.now_datetime(), {}}, fare,
                            template_);
  // A DEBIT without an answer leaves a grey record: the same card again settles it.
  uncertain_ = !r.ok() && r.refusal == Refusal::kTorn && core_.engine().grey_records() > 0;
  if (!r.ok()) return r;
  JournalEntry e;
  e.kind = JournalEntry::Kind::kPurchase;
  e.amount_fen = static_cast<std::uint32_t>(r.record.amount_fen());
  e.full_fen = price_fen;
  e.record = r.record;
  add(std::move(e));
  return r;
}

Result<std::uint32_t> MerchantPos::balance(CardLink& card) {
  BudgetLink link(card, config_.core.budget);
  SaleResult refusal;
  Result<CardFacts> facts = core_.read_facts(link, std::nullopt, &refusal);
  if (!facts) return Result<std::uint32_t>(Errc::kRejected, refusal.detail);
  return facts->balance_fen;
}

void MerchantPos::add(JournalEntry e) {
  e.no = next_no_++;
  e.settlement_batch = batch_;
  journal_.push_back(std::move(e));
  while (journal_.size() > config_.journal_max) journal_.pop_front();
}

JournalEntry* MerchantPos::find(std::uint64_t no) {
  for (JournalEntry& e : journal_) {
    if (e.no == no) return &e;
  }
  return nullptr;
}
const JournalEntry* MerchantPos::find(std::uint64_t no) const {
  return const_cast<MerchantPos*>(this)->find(no);
}

Status MerchantPos::upload_sales() {
  if (!config_.pump) {
    return Status(Errc::kInvalidArgument, "void and refund need the backend: PosConfig::pump");
  }
  const DurableUploadQueue& q = core_.queue();
  int attempts = 0;
  for (std::size_t i = 0; q.size() > 0 || q.in_flight(); ++i) {
    if (i >= config_.pump_rounds_max) return Status(Errc::kTimeout, "sales upload: no answer");
    if (!q.in_flight()) {
      if (attempts >= config_.upload_attempts_max) {
        return Status(Errc::kUnavailable, "the sales are not at the backend yet (link down?); " +
                                              std::to_string(q.size()) + " records queued");
      }
      ++attempts;
      core_.upload();
    }
    config_.pump();
  }
  return Status::ok();
}

Result<citycard::wire::Envelope> MerchantPos::call(citycard::wire::Envelope request) {
  request.set_request_id(next_request_id_++);
  return pumped_call(channel_, request, config_.pump, config_.pump_rounds_max);
}

Status MerchantPos::send_refund(JournalEntry& sale, bool is_void, std::uint32_t amount_fen,
                                const std::string& password) {
  if (Status s = upload_sales(); !s.is_ok()) return s;
  citycard::wire::Envelope e;
  auto* m = e.mutable_pos_refund();
  m->set_terminal_id(protocol::wire::field(psam_.terminal_id()));
  protocol::Serial8 serial{};
  (void)protocol::wire::to_serial(sale.record.card_serial(), serial);
  // The sale's identity and the refund's ordinal: the same request again has the same id.
  m->set_refund_id(to_hex(serial) + "-" + std::to_string(sale.record.card_counter()) +
                   (is_void ? "-V" : "-R") + std::to_string(sale.refunds_done + 1));
  m->set_kind(is_void ? citycard::wire::POS_VOID : citycard::wire::POS_REFUND);
  m->set_card_serial(sale.record.card_serial());
  m->set_card_counter(sale.record.card_counter());
  m->set_amount_fen(amount_fen);
  m->set_manager(config_.manager);
  m->set_manager_password(password);
  m->set_reason(is_void ? "void" : "refund");
  const std::uint64_t sale_no = sale.no;
  auto reply = call(std::move(e));
  if (!reply) return reply.status();
  if (reply->has_error()) {
    last_refund_code_ = reply->error().code();
    return status_of_error(reply->error());
  }
  if (!reply->has_pos_refund_reply() || reply->pos_refund_reply().amount_fen() != amount_fen) {
    return Status(Errc::kMalformed, "the backend's answer is not this refund's");
  }
  // The journal may have moved while we waited (it is ours alone; the sale is still there).
  JournalEntry* p = find(sale_no);
  if (p == nullptr) return Status(Errc::kInternal, "the sale left the journal");
  ++p->refunds_done;
  JournalEntry r;
  r.refers_to = sale_no;
  r.amount_fen = amount_fen;
  if (is_void) {
    p->voided = true;
    r.kind = JournalEntry::Kind::kVoid;
  } else {
    p->refunded_fen += amount_fen;
    r.kind = JournalEntry::Kind::kRefund;
  }
  add(std::move(r));
  return Status::ok();
}

Status MerchantPos::void_sale(std::uint64_t journal_no, const std::string& password) {
  last_refund_code_ = citycard::wire::OK;
  JournalEntry* p = find(journal_no);
  if (!p || p->kind != JournalEntry::Kind::kPurchase) {
    return Status(Errc::kRejected, "no such purchase in the journal");
  }
  if (p->voided || p->refunded_fen > 0) return Status(Errc::kRejected, "already voided/refunded");
  if (p->settlement_batch != batch_) return Status(Errc::kRejected, "settled: refund instead");
  return send_refund(*p, /*is_void=*/true, p->amount_fen, password);
}

Status MerchantPos::refund(std::uint64_t journal_no, std::uint32_t amount_fen,
                           const std::string& password) {
  last_refund_code_ = citycard::wire::OK;
  JournalEntry* p = find(journal_no);
  if (!p || p->kind != JournalEntry::Kind::kPurchase) {
    return Status(Errc::kRejected, "no such purchase in the journal");
  }
  if (p->voided) return Status(Errc::kRejected, "voided");
  if (amount_fen == 0 || amount_fen > p->amount_fen - p->refunded_fen) {
    return Status(Errc::kRejected, "refund more than what is left of the purchase");
  }
  return send_refund(*p, /*is_void=*/false, amount_fen, password);
}

std::string receipt_text(const JournalEntry& e, const std::string& merchant_id) {
  const char* kind = "REFUND";
  switch (e.kind) {
    case JournalEntry::Kind::kPurchase:
      kind = "PURCHASE";
      break;
    case JournalEntry::Kind::kVoid:
      kind = "VOID";
      break;
    case JournalEntry::Kind::kRefund:
      kind = "REFUND";
      break;
    case JournalEntry::Kind::kPreAuth:
      kind = "PRE-AUTHORISATION";
      break;
    case JournalEntry::Kind::kCompletion:
      kind = "COMPLETION";
      break;
    case JournalEntry::Kind::kRecharge:
      kind = "RECHARGE";
      break;
  }
  auto yuan = [](std::uint32_t fen) {
    std::string cents = std::to_string(fen % 100);
    if (cents.size() < 2) cents = "0" + cents;
    return std::to_string(fen / 100) + "." + cents;
  };
  std::string s = "MERCHANT " + merchant_id + "\nNO " + std::to_string(e.no) + " BATCH " +
                  std::to_string(e.settlement_batch) + "\n" + kind + " " + yuan(e.amount_fen);
  if (e.kind == JournalEntry::Kind::kPurchase || e.kind == JournalEntry::Kind::kCompletion) {
    s += "\nPRICE " + yuan(e.full_fen) + "\nCARD " +
         to_hex(ByteView(reinterpret_cast<const std::uint8_t*>(e.record.card_serial().data()),
                         e.record.card_serial().size())) +
         "\nTAC " +
         to_hex(ByteView(reinterpret_cast<const std::uint8_t*>(e.record.tac().data()),
                         e.record.tac().size()));
    if (e.kind == JournalEntry::Kind::kCompletion) s += "\nFOR NO " + std::to_string(e.refers_to);
  } else if (e.kind == JournalEntry::Kind::kPreAuth || e.kind == JournalEntry::Kind::kRecharge) {
    s += "\nCARD " + to_hex(e.card);
    if (!e.order_id.empty()) s += "\nORDER " + e.order_id;
  } else {
    s += "\nFOR NO " + std::to_string(e.refers_to);
  }
  return s + "\n";
}

std::optional<std::string> MerchantPos::reprint(std::uint64_t journal_no) const {
  const JournalEntry* e = find(journal_no);
  if (!e) return std::nullopt;
  return "REPRINT\n" + receipt_text(*e, config_.merchant_id);
}

namespace {

void count(SettlementTotals& t, const JournalEntry& e) {
  switch (e.kind) {
    case JournalEntry::Kind::kPurchase:
      ++t.purchases;
      t.purchase_fen += e.amount_fen;
      break;
    case JournalEntry::Kind::kVoid:
      ++t.voids;
      t.void_fen += e.amount_fen;
      break;
    case JournalEntry::Kind::kRefund:
      ++t.refunds;
      t.refund_fen += e.amount_fen;
      break;
    case JournalEntry::Kind::kCompletion:
      ++t.completions;
      t.completion_fen += e.amount_fen;
      break;
    case JournalEntry::Kind::kRecharge:
      ++t.recharges;
      t.recharge_fen += e.amount_fen;
      break;
    case JournalEntry::Kind::kPreAuth:
      break;  // no money
  }
}

}  // namespace

SettlementTotals MerchantPos::current_totals() const {
  SettlementTotals t;
  t.batch = batch_;
  for (const JournalEntry& e : journal_) {
    if (e.settlement_batch == batch_) count(t, e);
  }
  return t;
}

Status MerchantPos::change_pin(CardLink& card, const std::string& old_pin,
                               const std::string& new_pin) {
  if (!digits_only(old_pin) || !digits_only(new_pin)) {
    return Status(Errc::kInvalidArgument, "a PIN is 1..12 digits");
  }
  BudgetLink link(card, config_.core.budget);
  SaleResult refusal;
  Result<CardFacts> facts = core_.read_facts(link, std::nullopt, &refusal);
  if (!facts) {
    core_.refuse(refusal);
    return Status(refusal.refusal == Refusal::kTorn ? Errc::kTorn : Errc::kRejected,
                  refusal.detail);
  }
  Bytes data = pin_bcd(old_pin);
  data.push_back(0xFF);
  const Bytes fresh = pin_bcd(new_pin);
  data.insert(data.end(), fresh.begin(), fresh.end());
  Result<Response> r = link.transceive(Command{0x80, 0x5E, 0x01, 0x00, std::move(data), {}});
  if (!r) return Status(Errc::kTorn, "CHANGE PIN: " + r.status().message());
  if (!r->ok()) {
    ++wrong_pins_;
    return Status(Errc::kRejected,
                  (r->sw & 0xFFF0) == 0x63C0
                      ? "wrong PIN, " + std::to_string(r->sw & 0x0F) + " tries left"
                      : "PIN change refused (blocked?)");
  }
  ++pin_changes_;
  return Status::ok();
}

Result<std::uint64_t> MerchantPos::pre_authorise(CardLink& card, std::uint32_t amount_fen,
                                                 const std::string& pin) {
  if (amount_fen == 0) return Status(Errc::kInvalidArgument, "pre-authorise a positive amount");
  BudgetLink link(card, config_.core.budget);
  SaleResult result;
  Result<CardFacts> facts = core_.read_facts(link, std::nullopt, &result);
  if (!facts) {
    core_.refuse(result);
    return Status(Errc::kRejected, result.detail);
  }
  if (config_.require_pin && !verify_pin(link, pin, &result)) {
    core_.refuse(result);
    return Status(Errc::kRejected, result.detail);
  }
  if (facts->balance_fen < amount_fen) {
    return Status(Errc::kInsufficientFunds, "balance " + std::to_string(facts->balance_fen) +
                                                " fen does not cover " +
                                                std::to_string(amount_fen));
  }
  JournalEntry e;
  e.kind = JournalEntry::Kind::kPreAuth;
  e.amount_fen = amount_fen;
  e.card = facts->id.serial;
  e.at_epoch2000_s = core_.now_epoch2000_s();
  add(std::move(e));
  return next_no_ - 1;
}

SaleResult MerchantPos::complete(CardLink& card, std::uint64_t preauth_no,
                                 std::uint32_t final_fen) {
  JournalEntry* p = find(preauth_no);
  if (!p || p->kind != JournalEntry::Kind::kPreAuth || p->closed) {
    return core_.refuse_local(LocalRefusal::kNotAuthorised,
                              "no open pre-authorisation " + std::to_string(preauth_no));
  }
  if (core_.now_epoch2000_s() - p->at_epoch2000_s > config_.preauth_valid_s) {
    p->closed = true;
    return core_.refuse_local(LocalRefusal::kNotAuthorised, "pre-authorisation lapsed");
  }
  if (final_fen == 0 || final_fen > p->amount_fen) {
    return core_.refuse_local(LocalRefusal::kNotAuthorised,
                              "completion of " + std::to_string(final_fen) + " fen, authorised " +
                                  std::to_string(p->amount_fen));
  }
  BudgetLink link(card, config_.core.budget);
  SaleResult result;
  Result<CardFacts> facts = core_.read_facts(link, std::nullopt, &result);
  if (!facts) return core_.refuse(std::move(result));
  if (facts->id.serial != p->card) {
    return core_.refuse_local(LocalRefusal::kNotAuthorised, "another card than authorised");
  }
  const protocol::Serial8 card_serial = p->card;
  Fare fare;
  fare.full_fen = final_fen;
  fare.charged_fen = apply_discount_bp(final_fen, config_.discount_bp);
  SaleResult r = core_.sell(link, PurchaseRequest{fare.charged_fen, core_.now_datetime(), {}}, fare,
                            template_);
  uncertain_ = !r.ok() && r.refusal == Refusal::kTorn && core_.engine().grey_records() > 0;
  if (!r.ok()) return r;
  p->closed = true;  // deque::push_back in add() below keeps references valid
  JournalEntry e;
  e.kind = JournalEntry::Kind::kCompletion;
  e.amount_fen = static_cast<std::uint32_t>(r.record.amount_fen());
  e.full_fen = final_fen;
  e.refers_to = preauth_no;
  e.card = card_serial;
  e.record = r.record;
  add(std::move(e));
  return r;
}

Status MerchantPos::cancel_pre_authorisation(std::uint64_t preauth_no,
                                             const std::string& password) {
  if (password != config_.manager_password) return Status(Errc::kRejected, "wrong password");
  JournalEntry* p = find(preauth_no);
  if (!p || p->kind != JournalEntry::Kind::kPreAuth || p->closed) {
    return Status(Errc::kRejected, "no open pre-authorisation " + std::to_string(preauth_no));
  }
  p->closed = true;
  return Status::ok();
}

OnlineLoad MerchantPos::recharge(CardLink& card, RechargePoint& point, const std::string& order_id,
                                 std::uint32_t amount_fen) {
  OnlineLoad out;
  out.order_id = order_id;
  SaleResult refusal;
  Result<CardFacts> facts = core_.read_facts(card, std::nullopt, &refusal);
  if (!facts) {
    ++recharges_refused_;
    out.status = Status(Errc::kRejected, refusal.detail);
    return out;
  }
  out = point.recharge(card, facts->id.serial, order_id, amount_fen, core_.now_datetime());
  if (!out.ok()) {
    ++recharges_refused_;
    return out;
  }
  JournalEntry e;
  e.kind = JournalEntry::Kind::kRecharge;
  e.amount_fen = amount_fen;
  e.card = facts->id.serial;
  e.order_id = order_id;
  add(std::move(e));
  return out;
}

PosStatistics MerchantPos::statistics() const {
  PosStatistics s;
  for (const JournalEntry& e : journal_) {
    count(s.lifetime, e);
    if (e.kind == JournalEntry::Kind::kPreAuth) {
      ++s.pre_authorisations;
      if (!e.closed) ++s.pre_authorisations_open;
    }
  }
  s.wrong_pins = wrong_pins_;
  s.pin_changes = pin_changes_;
  s.recharges_refused = recharges_refused_;
  const std::uint64_t tickets = s.lifetime.purchases + s.lifetime.completions;
  if (tickets > 0) {
    s.average_ticket_fen =
        (s.lifetime.purchase_fen + s.lifetime.completion_fen) / static_cast<std::int64_t>(tickets);
  }
  s.sale = core_.counters();
  return s;
}

SettlementTotals MerchantPos::settle() {
  const SettlementTotals t = current_totals();
  ++batch_;
  core_.upload();
  return t;
}

}  // namespace citycard::devices
