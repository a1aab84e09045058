#include "citycard/backend/qr.h"

#include <string>

#include "citycard/backend/money.h"

namespace citycard::backend {

namespace pw = protocol::wire;
namespace wire = citycard::wire;
namespace qr = protocol::qr;
using wire::Envelope;

namespace {

Envelope error_reply(std::uint64_t id, wire::Code code, std::string message) {
  Envelope e;
  e.set_request_id(id);
  e.mutable_error()->set_code(code);
  e.mutable_error()->set_message(std::move(message));
  return e;
}

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS qr_grants ("
    "  key_id INTEGER PRIMARY KEY, card BLOB NOT NULL, phone_key BLOB NOT NULL,"
    "  valid_from INTEGER NOT NULL, valid_to INTEGER NOT NULL, max_amount INTEGER NOT NULL,"
    "  terminal BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS qr_payments ("
    "  key_id INTEGER NOT NULL, seq INTEGER NOT NULL, card BLOB NOT NULL,"
    "  amount_fen INTEGER NOT NULL, terminal BLOB NOT NULL, operator_id TEXT NOT NULL,"
    "  scanned_s INTEGER NOT NULL, batch_no INTEGER NOT NULL, PRIMARY KEY (key_id, seq));";

}  // namespace

QrService::QrService(Store& store, Ledger& ledger, Cards& cards, Issuance& issuance,
                     const Calendar& calendar, qr::EcKey issuer_key, QrOptions options)
    : store_(store),
      ledger_(ledger),
      cards_(cards),
      issuance_(issuance),
      calendar_(calendar),
      issuer_key_(std::move(issuer_key)),
      issuer_point_(issuer_key_.public_point()),
      options_(options) {}

Status QrService::open() {
  return store_.exec(kSchema);
}

Envelope QrService::issue_key(const Envelope& request) {
  const std::uint64_t id = request.request_id();
  const wire::QrKeyRequest& m = request.qr_key_request();
  protocol::TerminalId terminal{};
  protocol::Serial8 serial{};
  if (!pw::to_terminal(m.terminal_id(), terminal) || !pw::to_serial(m.card_serial(), serial) ||
      m.phone_key().size() != 65 || static_cast<std::uint8_t>(m.phone_key()[0]) != 0x04 ||
      m.validity_s() == 0 || m.max_amount_fen() == 0) {
    return error_reply(id, wire::MALFORMED,
                       "terminal 6 bytes, card 8, phone key 65 (uncompressed P-256), validity "
                       "and maximum above zero");
  }
  if (auto t = issuance_.terminal(terminal); !t.is_ok()) {
    return error_reply(id, wire::UNKNOWN_TERMINAL, t.status().message());
  }
  auto info = cards_.info(serial);
  if (!info.is_ok()) return error_reply(id, wire::UNKNOWN_CARD, info.status().message());
  if (!info->holder) return error_reply(id, wire::REJECTED, "QR payment needs a named card");
  if (info->card.status != CardStatus::kActive) {
    return error_reply(id, wire::REJECTED, "the card is not active");
  }
  qr::Grant g;
  auto next = store_.query("SELECT COALESCE(MAX(key_id), 0) + 1 FROM qr_grants");
  auto row = next.step();
  if (!row.is_ok() || !*row) return error_reply(id, wire::INTERNAL, "key id");
  g.key_id = static_cast<std::uint32_t>(next.column_int64(0));
  g.card = serial;
  std::copy(m.phone_key().begin(), m.phone_key().end(), g.phone_key.begin());
  g.valid_from_s = calendar_.now_epoch2000_s();
  g.valid_to_s = g.valid_from_s + std::min(m.validity_s(), options_.max_validity_s);
  g.max_amount_fen = std::min(m.max_amount_fen(), options_.max_amount_fen);
  const Bytes encoded = g.encode();
  auto sig = issuer_key_.sign(encoded);
  if (!sig.is_ok()) return error_reply(id, wire::INTERNAL, sig.status().message());
  auto insert = store_.query(
      "INSERT INTO qr_grants (key_id, card, phone_key, valid_from, valid_to, max_amount, "
      "terminal) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  insert.bind(1, g.key_id)
      .bind_blob(2, g.card)
      .bind_blob(3, g.phone_key)
      .bind(4, g.valid_from_s)
      .bind(5, g.valid_to_s)
      .bind(6, g.max_amount_fen)
      .bind_blob(7, terminal);
  if (Status s = insert.run(); !s) return error_reply(id, wire::INTERNAL, s.message());
  Envelope e;
  e.set_request_id(id);
  e.mutable_qr_key_reply()->set_grant(std::string(encoded.begin(), encoded.end()));
  e.mutable_qr_key_reply()->set_grant_signature(std::string(sig->begin(), sig->end()));
  return e;
}

Envelope QrService::upload(const Envelope& request) {
  const std::uint64_t id = request.request_id();
  const wire::QrUpload& m = request.qr_upload();
  protocol::TerminalId terminal{};
  if (!pw::to_terminal(m.terminal_id(), terminal)) {
    return error_reply(id, wire::MALFORMED, "terminal id must be 6 bytes");
  }
  auto reg = issuance_.terminal(terminal);
  if (!reg.is_ok()) return error_reply(id, wire::UNKNOWN_TERMINAL, reg.status().message());
  if (static_cast<std::size_t>(m.payments_size()) > options_.upload_payments_max) {
    return error_reply(id, wire::REJECTED, "too many payments in one upload");
  }
  std::int64_t total = 0;
  for (const auto& p : m.payments()) total += p.amount_fen();
  if (total != m.total_amount_fen()) {
    return error_reply(id, wire::MALFORMED,
                       "declared total " + std::to_string(m.total_amount_fen()) +
                           " fen, payments sum to " + std::to_string(total));
  }
  const std::string payable = "qr_payable:" + reg->operator_id;
  auto tx = store_.begin();
  if (!tx.is_ok()) return error_reply(id, wire::INTERNAL, tx.status().message());
  if (Status s = ledger_.open_account(payable); !s) {
    return error_reply(id, wire::INTERNAL, s.message());
  }
  Envelope e;
  e.set_request_id(id);
  wire::QrUploadAck* ack = e.mutable_qr_upload_ack();
  ack->set_batch_no(m.batch_no());
  for (int i = 0; i < m.payments_size(); ++i) {
    const wire::QrPayment& p = m.payments(i);
    auto problem = [&](wire::Code code, const std::string& why) {
      auto* r = ack->add_problems();
      r->set_index(static_cast<std::uint32_t>(i));
      r->set_code(code);
      r->set_message(why);
      if (code == wire::DUPLICATE) {
        ack->set_duplicates(ack->duplicates() + 1);
      } else {
        ack->set_rejected(ack->rejected() + 1);
      }
    };
    const Bytes raw(p.payload().begin(), p.payload().end());
    auto payload = qr::Payload::decode(raw);
    if (!payload.is_ok()) {
      problem(wire::MALFORMED, payload.status().message());
      continue;
    }
    const qr::Grant& g = payload->grant;
    if (!qr::verify(issuer_point_, g.encode(), payload->grant_signature)) {
      problem(wire::BAD_SIGNATURE, "grant not signed by our QR issuer key");
      continue;
    }
    if (!qr::verify(g.phone_key, payload->signed_part(), payload->signature)) {
      problem(wire::BAD_SIGNATURE, "payload not signed by the granted phone key");
      continue;
    }
    if (p.amount_fen() <= 0 || p.amount_fen() > g.max_amount_fen) {
      problem(wire::REJECTED, "amount outside (0, " + std::to_string(g.max_amount_fen) + "]");
      continue;
    }
    if (p.scanned_s() < g.valid_from_s || p.scanned_s() > g.valid_to_s ||
        p.scanned_s() < payload->created_s) {
      problem(wire::REJECTED, "scanned outside the grant's validity or before it was made");
      continue;
    }
    auto seen = store_.query("SELECT 1 FROM qr_payments WHERE key_id = ?1 AND seq = ?2");
    seen.bind(1, g.key_id).bind(2, payload->seq);
    auto seen_row = seen.step();
    if (!seen_row.is_ok()) return error_reply(id, wire::INTERNAL, seen_row.status().message());
    if (*seen_row) {
      problem(wire::DUPLICATE, "QR " + std::to_string(g.key_id) + "#" +
                                   std::to_string(payload->seq) + " was paid before");
      continue;
    }
    auto info = cards_.info(g.card);
    if (!info.is_ok() || !info->holder) {
      problem(wire::UNKNOWN_CARD, "the grant's card has no online account");
      continue;
    }
    if (Status s = cards_.debit_account(info->holder->id, p.amount_fen()); !s) {
      problem(s.code() == Errc::kInsufficientFunds ? wire::INSUFFICIENT_FUNDS : wire::INTERNAL,
              s.message());
      continue;
    }
    Posting posting;
    posting.kind = "qr";
    posting.reference = "qr " + std::to_string(g.key_id) + "#" + std::to_string(payload->seq);
    posting.entries = {{std::string(account::kOnlineAccounts), p.amount_fen()},
                       {payable, -p.amount_fen()}};
    if (auto posted = ledger_.post(posting); !posted.is_ok()) {
      return error_reply(id, wire::INTERNAL, posted.status().message());  // rolls back
    }
    auto insert = store_.query(
        "INSERT INTO qr_payments (key_id, seq, card, amount_fen, terminal, operator_id, "
        "scanned_s, batch_no) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    insert.bind(1, g.key_id)
        .bind(2, payload->seq)
        .bind_blob(3, g.card)
        .bind(4, p.amount_fen())
        .bind_blob(5, terminal)
        .bind(6, reg->operator_id)
        .bind(7, p.scanned_s())
        .bind(8, static_cast<std::int64_t>(m.batch_no()));
    if (Status s = insert.run(); !s) return error_reply(id, wire::INTERNAL, s.message());
    ack->set_accepted(ack->accepted() + 1);
  }
  if (Status s = tx->commit(); !s) return error_reply(id, wire::INTERNAL, s.message());
  return e;
}

}  // namespace citycard::backend
