// QR-code payment (乘车码), the backend's side: token keys for phones, and validators' uploads
// of the QR payments they accepted offline. Formats and crypto: protocol/qr.h.
//
// - issue_key(): QrKeyRequest from a registered terminal (the wallet service) for a named,
//   active card: a Grant (next key id, the card, the phone's P-256 key, validity now ..
//   now + min(asked, max_validity_s), max amount min(asked, max_amount_fen)) signed with the QR
//   issuer key. Refusals: UNKNOWN_TERMINAL, UNKNOWN_CARD, REJECTED (anonymous or inactive
//   card), MALFORMED.
// - upload(): QrUpload from a registered terminal. Per payment: the grant's signature under
//   our issuer key, the phone's signature, 0 < amount <= the grant's maximum, scanned within
//   the grant's validity and not before the payload was made; (key id, seq) paid once
//   (DUPLICATE after, nothing moves); the holder's online account must cover it
//   (INSUFFICIENT_FUNDS: rejected, for an operator to chase). An accepted payment is one
//   posting: Dr online_accounts / Cr qr_payable:<terminal's operator> (the holder's account
//   falls by the same amount), in the same transaction as its row in qr_payments. The batch's
//   declared count and total must match its payments (MALFORMED otherwise, nothing stored).
//   QR payments are dated by the day they arrive (settlement_date) and settled to the operator
//   with its card swipes (settlement.h: the line's qr figures, Dr qr_payable).
//
// The issuer key is the backend's QR signing key, an EC P-256 key kept in the store
// (qr_issuer_keys) with its certificate from the city CA (ca.h, role kServer, subject
// QrOptions::subject_id); validators check that certificate offline
// (protocol::qr::verify_certificate). certify() makes the key and its certificate the first
// time, and a new one when the certificate is revoked or within renew_before_days of its end;
// older keys are kept, so a grant signed before a renewal or a restart still verifies. Without
// a key (never certified) issue_key() answers UNSUPPORTED and upload() accepts nothing
// (BAD_SIGNATURE). The Backend makes the service in open() and loads the stored keys; the
// server certifies it when it opens the CA (server.cpp); an embedding program calls
// Backend::certify_qr(ca).
//
// Threads: as Service.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "citycard/backend/ca.h"
#include "citycard/backend/calendar.h"
#include "citycard/backend/cards.h"
#include "citycard/backend/issuance.h"
#include "citycard/backend/ledger.h"
#include "citycard/backend/store.h"
#include "citycard/protocol/qr.h"
#include "citycard/protocol/wire.h"

namespace citycard::backend {

struct QrOptions {
  std::uint32_t max_validity_s = 30 * 86'400;
  std::uint32_t max_amount_fen = 20'000;
  std::size_t upload_payments_max = 1'000;
  std::string subject_id = "qr-issuer.citycard";  // the certificate's subject id
  int renew_before_days = 60;                     // a certificate this close to its end is replaced
};

class QrService {
 public:
  QrService(Store& store, Ledger& ledger, Cards& cards, Issuance& issuance,
            const Calendar& calendar, QrOptions options = {});
  ~QrService();

  // Loads the issuer keys kept in the store (the tables are made by the schema).
  Status open();
  // Makes (or renews) the issuer key and its city CA certificate; returns the certificate's
  // PEM. Idempotent: a current certificate is returned as it is.
  Result<std::string> certify(CertificateAuthority& ca);
  // Whether there is an issuer key (certify() has run on this database).
  bool ready() const { return !keys_.empty(); }
  // The current issuer certificate (PEM); empty when not ready.
  const std::string& issuer_certificate_pem() const;
  // The current issuer key's public point; kNotFound when not ready.
  Result<protocol::qr::PublicPoint> issuer_point() const;
  // What qr_payable:<operator> should hold: its QR payments not in an approved settlement line.
  Result<std::int64_t> payable_fen(const std::string& operator_id) const;

  citycard::wire::Envelope issue_key(const citycard::wire::Envelope& request);
  citycard::wire::Envelope upload(const citycard::wire::Envelope& request);

 private:
  struct IssuerKey {
    std::int64_t key_no = 0;
    protocol::qr::EcKey key;
    protocol::qr::PublicPoint point{};
    std::optional<protocol::qr::PublicKey> parsed;  // point, parsed once (verify() is cheaper)
    std::string cert_pem;
    std::string cert_serial;
    std::int64_t not_after_unix_s = 0;
  };
  Status load();
  bool verify_grant(ByteView grant, ByteView signature) const;

  Store& store_;
  Ledger& ledger_;
  Cards& cards_;
  Issuance& issuance_;
  const Calendar& calendar_;
  QrOptions options_;
  std::vector<IssuerKey> keys_;  // oldest first; the last is current
};

}  // namespace citycard::backend
