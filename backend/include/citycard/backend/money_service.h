// The wire side of the money: the messages terminals send for recharge and load, pending
// loads, the blacklist and parameters, answered for Service (service.h), which hands them
// over. Each request that names a terminal must name a registered one (UNKNOWN_TERMINAL);
// that terminal is the actor the audit log records ("terminal:<hex>").
//
// Replies: RechargeOrderRequest -> RechargeOrderReply; LoadAuthRequest -> LoadAuthReply;
// LoadConfirm -> LoadConfirmReply; PendingLoadQuery -> PendingLoadList; BlacklistRequest ->
// BlacklistReply; ParamsRequest -> ParamsReply; or ErrorReply with the code of the refusal
// (errc_to_code below). Nothing is changed by a refused request.
//
// Threads: as Service.
#pragma once

#include "citycard/backend/fares.h"
#include "citycard/backend/issuance.h"
#include "citycard/backend/merchants.h"
#include "citycard/backend/recharge.h"
#include "citycard/backend/risk.h"
#include "citycard/protocol/status.h"
#include "citycard/protocol/wire.h"

namespace citycard::backend {

citycard::wire::Code errc_to_code(Errc code);
// An ErrorReply envelope answering request `request_id`: what every wire service refuses with.
citycard::wire::Envelope error_reply(std::uint64_t request_id, citycard::wire::Code code,
                                     std::string message);

class MoneyService {
 public:
  MoneyService(Recharge& recharge, Risk& risk, Fares& fares, Issuance& issuance,
               Merchants& merchants)
      : recharge_(recharge),
        risk_(risk),
        fares_(fares),
        issuance_(issuance),
        merchants_(merchants) {}

  bool handles(citycard::wire::Envelope::BodyCase body) const;
  citycard::wire::Envelope dispatch(const citycard::wire::Envelope& request);

 private:
  citycard::wire::Envelope recharge_order(const citycard::wire::Envelope& request);
  citycard::wire::Envelope load_auth(const citycard::wire::Envelope& request);
  citycard::wire::Envelope load_confirm(const citycard::wire::Envelope& request);
  citycard::wire::Envelope pending(const citycard::wire::Envelope& request);
  citycard::wire::Envelope blacklist(const citycard::wire::Envelope& request);
  citycard::wire::Envelope params(const citycard::wire::Envelope& request);
  // The registered terminal a request names, or an ErrorReply in `error`.
  Result<TerminalRecord> terminal(const std::string& field) const;

  Recharge& recharge_;
  Risk& risk_;
  Fares& fares_;
  Issuance& issuance_;
  Merchants& merchants_;
};

}  // namespace citycard::backend
