// The backend's request handler: framed wire messages in, framed replies out. The same
// object serves the simulated network (virtual time) and a sim::ZmqServer (wall time).
//
// Contract: every request gets exactly one reply envelope echoing its request_id (0 when the
// frame could not be decoded). UploadBatch -> UploadAck, or ErrorReply with the code that
// refused the batch (nothing changed; the terminal keeps the batch); BalanceQuery ->
// BalanceReply, or ErrorReply UNKNOWN_CARD / MALFORMED; Ping -> Pong. A frame that does not
// decode -> ErrorReply MALFORMED (REJECTED when over the size limit); the money side's
// messages (recharge, load, pending loads, blacklist, parameters) -> the MoneyService when one
// is set (money_service.h); any other message -> ErrorReply UNSUPPORTED. handle() never
// throws and never moves money on bad input.
//
// Threads: handle() runs on the server's thread; the Backend behind it must not be used from
// another thread at the same time.
#pragma once

#include <cstdint>

#include "citycard/backend/ingest.h"
#include "citycard/backend/issuance.h"
#include "citycard/protocol/bytes.h"
#include "citycard/protocol/wire.h"
#include "citycard/sim/transport.h"

namespace citycard::backend {

class MoneyService;
class SignOnService;
class QrService;
class DeskService;
class PosRefundService;

class Service final : public sim::RequestHandler {
 public:
  Service(Ingest& ingest, Issuance& issuance) : ingest_(ingest), issuance_(issuance) {}

  Bytes handle(ByteView frame) override;
  // The same, for an envelope already decoded (in-process callers).
  citycard::wire::Envelope handle_envelope(const citycard::wire::Envelope& request);

  // The money side's messages (money_service.h); null: answered UNSUPPORTED.
  void set_money(MoneyService* money) { money_ = money; }
  // Terminal sign-on (sign_on.h); null: answered UNSUPPORTED.
  void set_sign_on(SignOnService* sign_on) { sign_on_ = sign_on; }
  // QR-code payment (qr.h); null: answered UNSUPPORTED.
  void set_qr(QrService* qr) { qr_ = qr; }
  // The issuing desk (desk_service.h); null: answered UNSUPPORTED.
  void set_desk(DeskService* desk) { desk_ = desk; }
  // POS refund and void (pos_refund.h); null: answered UNSUPPORTED.
  void set_pos_refund(PosRefundService* refunds) { pos_refund_ = refunds; }

  std::uint64_t requests() const { return requests_; }
  std::uint64_t error_replies() const { return error_replies_; }

 private:
  citycard::wire::Envelope dispatch(const citycard::wire::Envelope& request);
  citycard::wire::Envelope balance(const citycard::wire::Envelope& request);

  Ingest& ingest_;
  Issuance& issuance_;
  std::uint64_t requests_ = 0;
  std::uint64_t error_replies_ = 0;
  MoneyService* money_ = nullptr;
  SignOnService* sign_on_ = nullptr;
  QrService* qr_ = nullptr;
  DeskService* desk_ = nullptr;
  PosRefundService* pos_refund_ = nullptr;
};

}  // namespace citycard::backend
