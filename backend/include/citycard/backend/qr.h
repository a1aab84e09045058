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
//   Not yet: qr_payable is not part of merchant settlement (settlement.h pays swipes).
//
// The issuer key is the backend's QR signing key; its certificate is issued by the city CA
// (ca.h), and validators check it offline (protocol::qr::verify_certificate).
//
// Threads: as Service.
#pragma once

#include <cstdint>

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
};

class QrService {
 public:
  QrService(Store& store, Ledger& ledger, Cards& cards, Issuance& issuance,
            const Calendar& calendar, protocol::qr::EcKey issuer_key, QrOptions options = {});

  // Creates its tables if needed.
  Status open();
  const protocol::qr::PublicPoint& issuer_point() const { return issuer_point_; }

  citycard::wire::Envelope issue_key(const citycard::wire::Envelope& request);
  citycard::wire::Envelope upload(const citycard::wire::Envelope& request);

 private:
  Store& store_;
  Ledger& ledger_;
  Cards& cards_;
  Issuance& issuance_;
  const Calendar& calendar_;
  protocol::qr::EcKey issuer_key_;
  protocol::qr::PublicPoint issuer_point_;
  QrOptions options_;
};

}  // namespace citycard::backend
