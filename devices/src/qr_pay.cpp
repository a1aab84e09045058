#include "citycard/devices/qr_pay.h"

#include <algorithm>

#include "citycard/devices/host_session.h"

namespace citycard::devices {

namespace pw = protocol::wire;
namespace wire = citycard::wire;
namespace qr = protocol::qr;
using wire::Envelope;

// ---- QrWallet ----

Result<QrWallet> QrWallet::create(const protocol::Serial8& card) {
  auto key = qr::EcKey::generate();
  if (!key) return key.status();
  return QrWallet(card, std::move(key).value());
}

Status QrWallet::request_key(OnlineLoadClient& client, const protocol::TerminalId& wallet_terminal,
                             std::uint32_t validity_s, std::uint32_t max_amount_fen) {
  Envelope e;
  auto* m = e.mutable_qr_key_request();
  m->set_terminal_id(pw::field(wallet_terminal));
  m->set_card_serial(pw::field(card_));
  m->set_phone_key(pw::field(key_.public_point()));
  m->set_validity_s(validity_s);
  m->set_max_amount_fen(max_amount_fen);
  auto reply = client.exchange(std::move(e));
  if (!reply) return reply.status();
  if (!reply->has_qr_key_reply()) return Status(Errc::kMalformed, "not a QR key reply");
  const auto& r = reply->qr_key_reply();
  auto grant = qr::Grant::decode(Bytes(r.grant().begin(), r.grant().end()));
  if (!grant || grant->card != card_ || grant->phone_key != key_.public_point()) {
    return Status(Errc::kMalformed, "the grant is not for this card and phone key");
  }
  grant_ = *grant;
  grant_signature_.assign(r.grant_signature().begin(), r.grant_signature().end());
  seq_ = 0;
  return Status::ok();
}

Result<Bytes> QrWallet::show(std::int64_t now_epoch2000_s) {
  if (!grant_) return Status(Errc::kRejected, "no QR key: ask the backend for one");
  if (now_epoch2000_s < grant_->valid_from_s || now_epoch2000_s > grant_->valid_to_s) {
    return Status(Errc::kRejected, "the QR key has expired: ask for a new one");
  }
  qr::Payload p;
  p.grant = *grant_;
  p.grant_signature = grant_signature_;
  p.seq = ++seq_;
  p.created_s = now_epoch2000_s;
  auto sig = key_.sign(p.signed_part());
  if (!sig) return sig.status();
  p.signature = std::move(sig).value();
  return p.encode();
}

// ---- QrValidator ----

const char* qr_refusal_name(QrRefusal r) {
  switch (r) {
    case QrRefusal::kMalformed:
      return "malformed";
    case QrRefusal::kBadGrant:
      return "bad_grant";
    case QrRefusal::kBadSignature:
      return "bad_signature";
    case QrRefusal::kGrantExpired:
      return "grant_expired";
    case QrRefusal::kExpired:
      return "expired";
    case QrRefusal::kFuture:
      return "future";
    case QrRefusal::kReplayed:
      return "replayed";
    case QrRefusal::kOverLimit:
      return "over_limit";
    case QrRefusal::kQueueFull:
      return "queue_full";
  }
  return "?";
}

QrValidator::QrValidator(qr::PublicPoint issuer, protocol::TerminalId terminal,
                         QrValidatorOptions options)
    : issuer_(issuer),
      issuer_key_(qr::PublicKey::from_point(issuer)),
      terminal_(terminal),
      options_(options) {}

const QrValidator::KnownGrant* QrValidator::known_grant(const qr::Payload& p) {
  Bytes id = p.grant.encode();
  id.insert(id.end(), p.grant_signature.begin(), p.grant_signature.end());
  if (auto it = grants_.find(p.grant.key_id); it != grants_.end() && it->second.grant == id) {
    return &it->second;
  }
  if (!issuer_key_ || !issuer_key_->verify(p.grant.encode(), p.grant_signature)) return nullptr;
  auto phone = qr::PublicKey::from_point(p.grant.phone_key);
  if (!phone) return nullptr;
  if (grants_.size() >= options_.grants_max) grants_.clear();
  auto [it, _] =
      grants_.insert_or_assign(p.grant.key_id, KnownGrant{std::move(id), std::move(*phone)});
  return &it->second;
}

Result<QrValidator> QrValidator::from_certificate(std::string_view issuer_cert_pem,
                                                  std::string_view root_pem,
                                                  const std::vector<std::string>& ca_pems,
                                                  std::int64_t at_unix_s,
                                                  protocol::TerminalId terminal,
                                                  QrValidatorOptions options) {
  auto point = qr::verify_certificate(issuer_cert_pem, root_pem, ca_pems, at_unix_s);
  if (!point) return point.status();
  return QrValidator(*point, terminal, options);
}

QrScan QrValidator::refuse(QrRefusal why, std::string detail) {
  ++counters_.refused;
  QrScan s;
  s.refusal = why;
  s.detail = std::move(detail);
  return s;
}

void QrValidator::forget_old(std::int64_t now_s) {
  // A code older than the age window is refused as expired anyway: no need to remember it.
  const std::int64_t horizon = now_s - options_.max_age_s;
  std::erase_if(seen_, [&](const auto& kv) { return kv.second < horizon; });
}

QrScan QrValidator::scan(ByteView code, std::int64_t now_s, std::uint32_t fare_fen) {
  ++counters_.scans;
  auto p = qr::Payload::decode(code);
  if (!p) return refuse(QrRefusal::kMalformed, p.status().message());
  const qr::Grant& g = p->grant;
  const KnownGrant* known = known_grant(*p);
  if (known == nullptr) return refuse(QrRefusal::kBadGrant, "grant not signed by the QR issuer");
  if (now_s < g.valid_from_s || now_s > g.valid_to_s) {
    return refuse(QrRefusal::kGrantExpired, "the phone's QR key is not valid now");
  }
  if (!known->phone_key.verify(p->signed_part(), p->signature)) {
    return refuse(QrRefusal::kBadSignature, "not signed by the granted phone key");
  }
  if (p->created_s < now_s - options_.max_age_s) {
    return refuse(QrRefusal::kExpired, "made " + std::to_string(now_s - p->created_s) +
                                           " s ago, at most " + std::to_string(options_.max_age_s));
  }
  if (p->created_s > now_s + options_.future_skew_s) {
    return refuse(QrRefusal::kFuture,
                  "made " + std::to_string(p->created_s - now_s) + " s in the future");
  }
  if (fare_fen > g.max_amount_fen) {
    return refuse(QrRefusal::kOverLimit, "fare above the QR key's maximum");
  }
  const auto id = std::make_pair(g.key_id, p->seq);
  if (seen_.contains(id)) return refuse(QrRefusal::kReplayed, "this QR code was used");
  if (queue_.size() >= options_.queue_max) {
    return refuse(QrRefusal::kQueueFull, "no room until an upload");
  }
  if (seen_.size() >= options_.seen_max) forget_old(now_s);
  if (seen_.size() >= options_.seen_max) {
    return refuse(QrRefusal::kQueueFull, "replay memory full");
  }
  seen_.emplace(id, p->created_s);
  QrScan s;
  s.payment.set_payload(std::string(code.begin(), code.end()));
  s.payment.set_amount_fen(fare_fen);
  s.payment.set_scanned_s(now_s);
  queue_.push_back(s.payment);
  ++counters_.accepted;
  return s;
}

void QrValidator::upload(sim::Channel& channel) {
  if (in_flight_) return;
  if (batch_frame_.empty()) {
    if (queue_.empty()) return;
    batch_count_ = std::min(queue_.size(), options_.batch_max);
    Envelope e;
    auto* m = e.mutable_qr_upload();
    m->set_terminal_id(pw::field(terminal_));
    m->set_batch_no(++batch_no_);
    std::int64_t total = 0;
    for (std::size_t i = 0; i < batch_count_; ++i) {
      *m->add_payments() = queue_[i];
      total += queue_[i].amount_fen();
    }
    m->set_total_amount_fen(total);
    e.set_request_id(next_request_id_++);
    batch_frame_ = pw::encode(e);
  }
  in_flight_ = true;
  std::weak_ptr<int> alive = alive_;
  channel.request(batch_frame_, [this, alive](Result<Bytes> reply) {
    if (alive.expired()) return;
    in_flight_ = false;
    auto fail = [&](Status s) {
      ++counters_.upload_failures;
      last_failure_ = std::move(s);
    };
    if (!reply) return fail(reply.status());
    auto e = pw::decode(*reply);
    if (!e) return fail(e.status());
    if (e->has_error()) return fail(status_of_error(e->error()));
    if (!e->has_qr_upload_ack() || e->qr_upload_ack().batch_no() != batch_no_) {
      return fail(Status(Errc::kMalformed, "not the ack of our QR batch"));
    }
    const auto& ack = e->qr_upload_ack();
    counters_.uploaded += ack.accepted();
    counters_.upload_duplicates += ack.duplicates();
    counters_.upload_rejected += ack.rejected();
    for (std::size_t i = 0; i < batch_count_; ++i) {
      counters_.acked_amount_fen += queue_.front().amount_fen();
      queue_.pop_front();
    }
    batch_count_ = 0;
    batch_frame_.clear();
  });
}

}  // namespace citycard::devices
