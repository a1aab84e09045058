#include "citycard/backend/pos_refund.h"

#include <string>

#include "citycard/backend/money.h"
#include "citycard/backend/money_service.h"

namespace citycard::backend {

namespace pw = protocol::wire;
namespace wire = citycard::wire;
using wire::Envelope;

namespace {

constexpr std::size_t kRefundIdMax = 64;
constexpr std::size_t kReasonMax = 200;

bool printable_id(const std::string& s) {
  if (s.empty() || s.size() > kRefundIdMax) return false;
  for (const char c : s) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

// A refusal inside the audited transaction: rolls it back and becomes the ErrorReply.
struct Refusal {
  wire::Code code = wire::INTERNAL;
  std::string message;
};

}  // namespace

Result<std::int64_t> PosRefundService::refunded_fen(const std::string& merchant_id) const {
  auto q =
      store_.query("SELECT coalesce(sum(amount_fen), 0) FROM pos_refunds WHERE merchant_id = ?1");
  q.bind(1, merchant_id);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  return q.column_int64(0);
}

Envelope PosRefundService::refund(const Envelope& request) {
  const std::uint64_t id = request.request_id();
  const wire::PosRefundRequest& m = request.pos_refund();
  protocol::TerminalId terminal{};
  protocol::Serial8 serial{};
  if (!pw::to_terminal(m.terminal_id(), terminal) || !pw::to_serial(m.card_serial(), serial) ||
      !printable_id(m.refund_id()) || m.amount_fen() <= 0 || m.reason().size() > kReasonMax ||
      (m.kind() != wire::POS_REFUND && m.kind() != wire::POS_VOID)) {
    return error_reply(id, wire::MALFORMED,
                       "terminal 6 bytes, card 8, refund id 1..64 printable ASCII, amount above "
                       "zero, kind refund or void, reason at most 200 bytes");
  }
  auto reg = issuance_.terminal(terminal);
  if (!reg.is_ok()) return error_reply(id, wire::UNKNOWN_TERMINAL, reg.status().message());
  const std::string& merchant = reg->operator_id;

  // The manager's authority: a live merchant owner of this terminal's merchant.
  auto session = users_.login(m.manager(), m.manager_password());
  if (!session.is_ok()) {
    return error_reply(id, wire::REFUND_NOT_AUTHORISED,
                       "refund refused: " + session.status().message());
  }
  if (Status s = users_.require_merchant(*session, merchant, {Role::kMerchantOwner}, "pos_refund");
      !s.is_ok()) {
    return error_reply(
        id, wire::REFUND_NOT_AUTHORISED,
        "refund refused: " + s.message() + " (a manager of " + merchant + " must authorise it)");
  }

  Refusal refusal;
  Envelope reply;
  reply.set_request_id(id);
  wire::PosRefundReply* out = reply.mutable_pos_refund_reply();
  out->set_refund_id(m.refund_id());
  const std::int64_t amount = m.amount_fen();
  const int kind = m.kind();

  Status done = users_.audited(*session, "pos_refund", m.refund_id(), [&]() -> Status {
    auto refuse = [&](wire::Code code, std::string message) {
      refusal = {code, message};
      return Status(Errc::kRejected, std::move(message));
    };
    // Idempotency: a refund id is answered once.
    {
      auto q = store_.query(
          "SELECT r.kind, r.terminal_id, r.card_serial, r.card_counter, r.amount_fen, "
          "r.holder_id, s.amount_fen, (SELECT sum(amount_fen) FROM pos_refunds WHERE swipe_id = "
          "r.swipe_id AND rowid <= r.rowid) FROM pos_refunds r JOIN swipes s ON s.id = "
          "r.swipe_id WHERE r.refund_id = ?1");
      q.bind(1, m.refund_id());
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (*row) {
        const Bytes t = q.column_blob(1), c = q.column_blob(2);
        if (q.column_int64(0) != kind || t != Bytes(terminal.begin(), terminal.end()) ||
            c != Bytes(serial.begin(), serial.end()) ||
            q.column_int64(3) != static_cast<std::int64_t>(m.card_counter()) ||
            q.column_int64(4) != amount) {
          return refuse(wire::CONFLICT, "refund id " + m.refund_id() +
                                            " was used for another request; nothing changed");
        }
        out->set_amount_fen(amount);
        out->set_original_fen(q.column_int64(6));
        out->set_refunded_total_fen(q.column_int64(7));
        out->set_duplicate(true);
        const std::int64_t holder = q.column_int64(5);
        auto acc = store_.query("SELECT account_fen FROM holders WHERE id = ?1");
        acc.bind(1, holder);
        auto arow = acc.step();
        if (!arow.is_ok()) return arow.status();
        if (*arow) out->set_account_fen(acc.column_int64(0));
        return Status::ok();
      }
    }
    // The original sale.
    std::int64_t swipe_id = 0, original = 0, day = 0, reconciled = 0;
    std::string sold_by;
    {
      auto q = store_.query(
          "SELECT id, operator_id, amount_fen, settlement_date, reconciled FROM swipes WHERE "
          "card_serial = ?1 AND card_counter = ?2");
      q.bind_blob(1, serial).bind(2, static_cast<std::int64_t>(m.card_counter()));
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      if (!*row) {
        return refuse(wire::ORIGINAL_NOT_FOUND,
                      "no sale of card " + to_hex(serial) + " with counter " +
                          std::to_string(m.card_counter()) + " has reached the backend");
      }
      swipe_id = q.column_int64(0);
      sold_by = q.column_text(1);
      original = q.column_int64(2);
      day = q.column_int64(3);
      reconciled = q.column_int64(4);
    }
    if (sold_by != merchant) {
      return refuse(wire::WRONG_MERCHANT, "the sale belongs to merchant " + sold_by + ", not to " +
                                              merchant + " (the terminal's)");
    }
    std::int64_t refunded = 0;
    {
      auto q =
          store_.query("SELECT coalesce(sum(amount_fen), 0) FROM pos_refunds WHERE swipe_id = ?1");
      q.bind(1, swipe_id);
      auto row = q.step();
      if (!row.is_ok()) return row.status();
      refunded = q.column_int64(0);
    }
    if (kind == wire::POS_VOID) {
      if (refunded > 0 || amount != original) {
        return refuse(wire::VOID_NOT_ALLOWED,
                      "a void gives back the whole sale (" + std::to_string(original) +
                          " fen) of a sale not refunded before (" + std::to_string(refunded) +
                          " fen refunded); refund instead");
      }
      if (day != calendar_.today_yyyymmdd() || reconciled != 0) {
        return refuse(wire::VOID_NOT_ALLOWED, "the sale's day " + std::to_string(day) +
                                                  " is over or settled; refund instead");
      }
    }
    if (amount > original - refunded) {
      return refuse(wire::REFUND_EXCEEDS_ORIGINAL,
                    "refund of " + std::to_string(amount) + " fen is more than the " +
                        std::to_string(original - refunded) + " fen left of the sale (" +
                        std::to_string(original) + " fen, " + std::to_string(refunded) +
                        " fen refunded before)");
    }
    auto info = cards_.info(serial);
    if (!info.is_ok()) return info.status();
    if (!info->holder) {
      return refuse(wire::NO_REFUND_ACCOUNT,
                    "card " + to_hex(serial) +
                        " is anonymous: no online account to refund to; refund at the service "
                        "counter");
    }
    const std::int64_t holder = info->holder->id;
    if (Status s = cards_.credit_account(holder, amount); !s.is_ok()) {
      if (s.code() == Errc::kRejected) return refuse(wire::REJECTED, s.message());
      return s;
    }
    Posting posting;
    posting.kind = kind == wire::POS_VOID ? "pos_void" : "pos_refund";
    posting.reference = "refund " + m.refund_id() + " of swipe " + std::to_string(swipe_id);
    posting.entries = {{account::payable(merchant), amount},
                       {std::string(account::kOnlineAccounts), -amount}};
    auto posted = ledger_.post(posting);
    if (!posted.is_ok()) return posted.status();
    if (Status s = store_
                       .query("INSERT INTO pos_refunds(refund_id, kind, terminal_id, merchant_id, "
                              "card_serial, card_counter, swipe_id, amount_fen, holder_id, "
                              "manager, posting_id, settlement_date, created_at_us) VALUES (?1, "
                              "?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)")
                       .bind(1, m.refund_id())
                       .bind(2, std::int64_t{kind})
                       .bind_blob(3, terminal)
                       .bind(4, merchant)
                       .bind_blob(5, serial)
                       .bind(6, static_cast<std::int64_t>(m.card_counter()))
                       .bind(7, swipe_id)
                       .bind(8, amount)
                       .bind(9, holder)
                       .bind(10, m.manager())
                       .bind(11, *posted)
                       .bind(12, std::int64_t{calendar_.today_yyyymmdd()})
                       .bind(13, calendar_.now_us())
                       .run();
        !s.is_ok()) {
      return s;
    }
    auto after = cards_.info(serial);
    if (!after.is_ok()) return after.status();
    out->set_amount_fen(amount);
    out->set_original_fen(original);
    out->set_refunded_total_fen(refunded + amount);
    out->set_account_fen(after->holder->account_fen);
    return Status::ok();
  });
  if (!done.is_ok()) {
    if (refusal.code != wire::INTERNAL) return error_reply(id, refusal.code, refusal.message);
    return error_reply(id, wire::INTERNAL, done.message());
  }
  return reply;
}

}  // namespace citycard::backend
