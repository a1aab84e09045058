#include "citycard/backend/service.h"

#include <exception>
#include <string>

#include "citycard/backend/desk_service.h"
#include "citycard/backend/money_service.h"
#include "citycard/backend/pos_refund.h"
#include "citycard/backend/qr.h"
#include "citycard/backend/sign_on.h"

namespace citycard::backend {

namespace pw = protocol::wire;
using citycard::wire::Code;
using citycard::wire::Envelope;

namespace {

}  // namespace

Bytes Service::handle(ByteView frame) {
  ++requests_;
  Envelope reply;
  try {
    auto request = pw::decode(frame);
    if (!request.is_ok()) {
      const Code code = request.status().code() == Errc::kTooLarge ? citycard::wire::REJECTED
                                                                   : citycard::wire::MALFORMED;
      reply = error_reply(0, code, request.status().message());
    } else {
      reply = dispatch(*request);
    }
  } catch (const std::exception& e) {
    // Out of memory in a protobuf, say: the batch transaction has already rolled back.
    reply = error_reply(0, citycard::wire::INTERNAL, e.what());
  } catch (...) {
    reply = error_reply(0, citycard::wire::INTERNAL, "unknown exception");
  }
  if (reply.has_error()) ++error_replies_;
  return pw::encode(reply);
}

Envelope Service::handle_envelope(const Envelope& request) {
  ++requests_;
  Envelope reply = dispatch(request);
  if (reply.has_error()) ++error_replies_;
  return reply;
}

Envelope Service::dispatch(const Envelope& request) {
  const std::uint64_t id = request.request_id();
  switch (request.body_case()) {
    case Envelope::kUpload: {
      IngestResult r = ingest_.ingest(request.upload());
      if (!r.ok()) return error_reply(id, r.code, std::move(r.message));
      Envelope e;
      e.set_request_id(id);
      *e.mutable_upload_ack() = std::move(r.ack);
      return e;
    }
    case Envelope::kBalanceQuery:
      return balance(request);
    case Envelope::kPing: {
      Envelope e;
      e.set_request_id(id);
      e.mutable_pong()->set_nonce(request.ping().nonce());
      return e;
    }
    case Envelope::kSignOn:
      if (sign_on_ != nullptr) return sign_on_->sign_on(request);
      break;
    case Envelope::kQrKeyRequest:
      if (qr_ != nullptr) return qr_->issue_key(request);
      break;
    case Envelope::kQrUpload:
      if (qr_ != nullptr) return qr_->upload(request);
      break;
    case Envelope::kDeskRequest:
      if (desk_ != nullptr) return desk_->handle(request);
      break;
    case Envelope::kPosRefund:
      if (pos_refund_ != nullptr) return pos_refund_->refund(request);
      break;
    default:
      if (money_ != nullptr && money_->handles(request.body_case())) {
        return money_->dispatch(request);
      }
      break;
  }
  return error_reply(id, citycard::wire::UNSUPPORTED,
                     "the backend does not serve message type " +
                         std::to_string(static_cast<int>(request.body_case())));
}

Envelope Service::balance(const Envelope& request) {
  const std::uint64_t id = request.request_id();
  protocol::Serial8 serial{};
  if (!pw::to_serial(request.balance_query().card_serial(), serial)) {
    return error_reply(id, citycard::wire::MALFORMED, "card serial must be 8 bytes");
  }
  auto card = issuance_.card(serial);
  if (!card.is_ok()) {
    const bool unknown = card.status().code() == Errc::kNotFound;
    return error_reply(id, unknown ? citycard::wire::UNKNOWN_CARD : citycard::wire::INTERNAL,
                       card.status().message());
  }
  Envelope e;
  e.set_request_id(id);
  auto* reply = e.mutable_balance_reply();
  reply->set_card_serial(pw::field(serial));
  reply->set_balance_fen(card->balance_fen);
  reply->set_last_counter(card->last_counter.value_or(0));
  return e;
}

}  // namespace citycard::backend
