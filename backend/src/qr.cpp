#include "citycard/backend/qr.h"

#include <string>

#include "citycard/backend/money.h"
#include "citycard/backend/money_service.h"

namespace citycard::backend {

namespace pw = protocol::wire;
namespace wire = citycard::wire;
namespace qr = protocol::qr;
using wire::Envelope;

QrService::QrService(Store& store, Ledger& ledger, Cards& cards, Issuance& issuance,
                     const Calendar& calendar, QrOptions options)
    : store_(store),
      ledger_(ledger),
      cards_(cards),
      issuance_(issuance),
      calendar_(calendar),
      options_(std::move(options)) {}

QrService::~QrService() = default;

Status QrService::open() {
  return load();
}

Status QrService::load() {
  std::vector<IssuerKey> keys;
  auto q = store_.query(
      "SELECT key_no, key_pem, cert_pem, cert_serial, not_after_unix_s FROM qr_issuer_keys "
      "ORDER BY key_no");
  for (;;) {
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    if (!*row) break;
    auto key = qr::EcKey::from_private_pem(q.column_text(1));
    if (!key.is_ok()) {
      return Status(Errc::kInternal, "QR issuer key " + std::to_string(q.column_int64(0)) +
                                         " does not load: " + key.status().message());
    }
    const qr::PublicPoint point = key->public_point();
    std::optional<qr::PublicKey> parsed = qr::PublicKey::from_point(point);
    if (!parsed) return Status(Errc::kInternal, "QR issuer key's public point does not parse");
    IssuerKey k{q.column_int64(0), std::move(key).value(), point,
                std::move(parsed), q.column_text(2),       q.column_text(3),
                q.column_int64(4)};
    keys.push_back(std::move(k));
  }
  keys_ = std::move(keys);
  return Status::ok();
}

const std::string& QrService::issuer_certificate_pem() const {
  static const std::string kNone;
  return keys_.empty() ? kNone : keys_.back().cert_pem;
}

Result<qr::PublicPoint> QrService::issuer_point() const {
  if (keys_.empty()) return Status(Errc::kNotFound, "no QR issuer key: not certified yet");
  return keys_.back().point;
}

Result<std::string> QrService::certify(CertificateAuthority& ca) {
  if (!keys_.empty()) {
    const IssuerKey& k = keys_.back();
    auto cert = ca.certificate(k.cert_serial);
    if (!cert.is_ok() && cert.status().code() != Errc::kNotFound) return cert.status();
    const std::int64_t renew_at =
        k.not_after_unix_s - std::int64_t{options_.renew_before_days} * 86'400;
    if (cert.is_ok() && !cert->revoked && ca.now_unix_s() < renew_at) return k.cert_pem;
  }
  auto pair = generate_key_pair();
  if (!pair.is_ok()) return pair.status();
  // Servers' certificates bind a CURVE key; the QR issuer never connects, so its CURVE secret
  // is not kept.
  auto curve = sim::generate_curve_key_pair();
  if (!curve.is_ok()) return curve.status();
  auto txn = store_.begin();
  if (!txn.is_ok()) return txn.status();
  auto cert = ca.enrol(
      {CertRole::kServer, options_.subject_id, pair->public_pem, curve->public_key, std::nullopt});
  if (!cert.is_ok()) return cert.status();
  if (Status s = store_
                     .query("INSERT INTO qr_issuer_keys(key_pem, cert_pem, cert_serial, "
                            "not_after_unix_s, created_at_us) VALUES (?1, ?2, ?3, ?4, ?5)")
                     .bind(1, pair->private_pem)
                     .bind(2, cert->pem)
                     .bind(3, cert->serial_hex)
                     .bind(4, cert->not_after_unix_s)
                     .bind(5, calendar_.now_us())
                     .run();
      !s.is_ok()) {
    return s;
  }
  if (Status s = txn->commit(); !s.is_ok()) return s;
  if (Status s = load(); !s.is_ok()) return s;
  return cert->pem;
}

bool QrService::verify_grant(ByteView grant, ByteView signature) const {
  for (auto it = keys_.rbegin(); it != keys_.rend(); ++it) {
    if (it->parsed->verify(grant, signature)) return true;
  }
  return false;
}

Result<std::int64_t> QrService::payable_fen(const std::string& operator_id) const {
  auto q = store_.query(
      "SELECT (SELECT coalesce(sum(amount_fen), 0) FROM qr_payments WHERE operator_id = ?1) - "
      "(SELECT coalesce(sum(qr_fen), 0) FROM settlement_lines WHERE party_kind = 0 AND "
      "party_id = ?1 AND batch_id IN (SELECT id FROM settlement_batches WHERE state IN (1, 2, "
      "3)))");
  q.bind(1, operator_id);
  auto row = q.step();
  if (!row.is_ok()) return row.status();
  return q.column_int64(0);
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
  if (keys_.empty()) {
    return error_reply(id, wire::UNSUPPORTED,
                       "no QR issuer key: the backend's QR issuer is not certified by the city CA");
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
  auto sig = keys_.back().key.sign(encoded);
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
  const std::string payable = account::qr_payable(reg->operator_id);
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
    if (!verify_grant(g.encode(), payload->grant_signature)) {
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
        "scanned_s, batch_no, settlement_date) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    insert.bind(1, g.key_id)
        .bind(2, payload->seq)
        .bind_blob(3, g.card)
        .bind(4, p.amount_fen())
        .bind_blob(5, terminal)
        .bind(6, reg->operator_id)
        .bind(7, p.scanned_s())
        .bind(8, static_cast<std::int64_t>(m.batch_no()))
        .bind(9, std::int64_t{calendar_.today_yyyymmdd()});
    if (Status s = insert.run(); !s) return error_reply(id, wire::INTERNAL, s.message());
    ack->set_accepted(ack->accepted() + 1);
  }
  if (Status s = tx->commit(); !s) return error_reply(id, wire::INTERNAL, s.message());
  return e;
}

}  // namespace citycard::backend
