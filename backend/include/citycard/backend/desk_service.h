// The issuing desk over the wire (发卡/售卡网点): the backend's side of wire.proto DeskRequest /
// DeskReply. The card lifecycle itself is Cards (cards.h); this is who may ask, and the
// at-most-once rule for asking twice.
//
// Who: the request names its desk terminal, which must be registered (UNKNOWN_TERMINAL) to a
// merchant of kind desk (FORBIDDEN). The desk's operator signs in with user name and password
// (Users::login, audited); only admin and finance staff get a session (FORBIDDEN otherwise).
// A session is 16 bytes, bound to that desk and that user, and lasts session_ttl_us of the
// backend's clock or until sign-out; every other operation carries it (DESK_NOT_SIGNED_IN
// when it is missing, unknown, expired or another desk's). Sessions are rows in the database,
// so they survive a restart of the backend. Each operation then runs as that user through
// Cards, which checks the role again against the stored user (a user deactivated since
// sign-in is FORBIDDEN) and writes the audit row.
//
// What: issue (named or anonymous, card type, deposit, opening value, validity) -> the card's
// image to personalise; cancel (an unused card, money back); query (the backend's record:
// believed balance, deposit, status); refund (the balance the card reported at the desk plus
// the deposit); replace (a new card carrying the balance; the old one replaced); report lost
// (named cards) and found. Refusals as Cards gives them: REJECTED (wrong status, anonymous
// card reported lost, refund of a lost card, more on the card than the backend believes),
// UNKNOWN_CARD, MALFORMED (a field of the wrong length or out of range), FORBIDDEN; nothing
// changes by a refused request.
//
// Asking twice: each changing operation carries op_no > 0, the desk's own operation number.
// The answer is stored with it in the operation's transaction (desk_ops); the same op_no with
// the same operation again gets that answer with `replayed` set, and nothing moves (a desk
// whose answer was lost asks again and still gets the new card's image); the same op_no with
// another operation is DESK_OP_REUSED. Refusals are not stored: asking again runs again.
// desk_ops keeps issued images, whose keys the backend can derive anyway.
//
// Threads: as Service.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "citycard/backend/calendar.h"
#include "citycard/backend/cards.h"
#include "citycard/backend/issuance.h"
#include "citycard/backend/merchants.h"
#include "citycard/backend/store.h"
#include "citycard/backend/users.h"
#include "citycard/protocol/wire.h"

namespace citycard::backend {

struct DeskOptions {
  std::int64_t session_ttl_us = 12LL * 3'600 * 1'000'000;  // one long shift
};

class DeskService {
 public:
  // `secret_seed` makes session tokens unguessable (the Backend passes its key seed).
  DeskService(Store& store, Users& users, Cards& cards, Issuance& issuance, Merchants& merchants,
              const Calendar& calendar, std::uint64_t secret_seed, DeskOptions options = {});

  // Creates its tables if needed.
  Status open();

  // DeskRequest -> DeskReply, or ErrorReply (see above).
  citycard::wire::Envelope handle(const citycard::wire::Envelope& request);

 private:
  citycard::wire::Envelope sign_in(std::uint64_t id, const protocol::TerminalId& desk,
                                   const citycard::wire::DeskSignIn& m);
  Result<Session> session(const protocol::TerminalId& desk, const std::string& token) const;
  // `changed` is set once Cards has done the operation (a later failure must undo it).
  Result<citycard::wire::DeskReply> run(const Session& by, const citycard::wire::DeskRequest& m,
                                        bool* changed);
  Result<citycard::wire::DeskCardState> state(const protocol::Serial8& card) const;

  Store& store_;
  Users& users_;
  Cards& cards_;
  Issuance& issuance_;
  Merchants& merchants_;
  const Calendar& calendar_;
  std::array<std::uint8_t, 16> secret_{};
  DeskOptions options_;
};

}  // namespace citycard::backend
