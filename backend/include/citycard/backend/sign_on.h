// Terminal sign-on (签到): the backend's side of wire.proto SignOnRequest / SignOnReply.
//
// A terminal signs on when it starts, after its link comes back and at the start of a shift.
// The backend checks who it is: the terminal id must be registered (UNKNOWN_TERMINAL), to the
// device id and operator (merchant) the terminal says it has (TERMINAL_MISMATCH, wire code 50:
// a PSAM moved into another device, or a device configured for another operator, would put
// its sales on the wrong payable). It answers its clock (the terminal corrects its own drifting
// clock from it, devices/host_session.h), the newest blacklist and parameter versions (so the
// terminal knows whether to pull), and the route and vehicle of the registration.
//
// Sign-on moves no money and writes nothing. Uploads are checked again on their own (ingest.h:
// terminal id, signature, operator, the PSAM sequence): a terminal that never signs on gains
// nothing by it.
//
// Threads: as Service.
#pragma once

#include "citycard/backend/calendar.h"
#include "citycard/backend/fares.h"
#include "citycard/backend/issuance.h"
#include "citycard/backend/risk.h"
#include "citycard/protocol/wire.h"

namespace citycard::backend {

class SignOnService {
 public:
  SignOnService(Issuance& issuance, Risk& risk, Fares& fares, const Calendar& calendar)
      : issuance_(issuance), risk_(risk), fares_(fares), calendar_(calendar) {}

  // SignOnRequest -> SignOnReply, or ErrorReply MALFORMED / UNKNOWN_TERMINAL /
  // TERMINAL_MISMATCH / INTERNAL.
  citycard::wire::Envelope sign_on(const citycard::wire::Envelope& request) const;

 private:
  Issuance& issuance_;
  Risk& risk_;
  Fares& fares_;
  const Calendar& calendar_;
};

}  // namespace citycard::backend
