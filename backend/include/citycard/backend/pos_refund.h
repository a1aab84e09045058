// POS refund (退货) and void (撤销) of a card purchase, the backend's side (issue 5).
//
// A merchant POS sends PosRefundRequest{terminal_id, refund_id, kind, card_serial,
// card_counter, amount_fen, manager, manager_password, reason} (wire Envelope field 80) and
// gets PosRefundReply (81) or an ErrorReply. The original sale is the swipe (card serial, card
// counter) the backend has ingested. Checks, in this order:
//   MALFORMED             terminal 6 bytes, card 8, refund id 1..64 printable ASCII, amount
//                         above zero, reason at most 200 bytes
//   UNKNOWN_TERMINAL      the terminal is not registered; its operator is the merchant
//   REFUND_NOT_AUTHORISED the manager's name or password is wrong, the user is deactivated, or
//                         not a merchant owner (the manager role) of the terminal's merchant
//   (a refund id seen before: the same request answers the stored reply with duplicate set and
//    moves nothing; the same id with other parameters is CONFLICT)
//   ORIGINAL_NOT_FOUND    no swipe (card, counter) at the backend (not uploaded yet?)
//   WRONG_MERCHANT        the swipe belongs to another merchant
//   VOID_NOT_ALLOWED      a void that is not the whole sale, of a sale refunded before, or of a
//                         sale whose settlement day is over (refund instead)
//   REFUND_EXCEEDS_ORIGINAL the amount is more than what is left of the sale after earlier
//                         refunds and voids
//   NO_REFUND_ACCOUNT     an anonymous card: no online account to give the money back to
//   REJECTED              the holder's online account would exceed its maximum
// An accepted refund is one posting, Dr payable:<merchant> / Cr online_accounts, with the
// holder's online account credited and its row in pos_refunds, in one audited transaction
// (actor: the manager). Settlement deducts refunds from the merchant's next payout
// (settlement.h); the clearing reconciliation counts them (clearing.cpp).
//
// Money back to the card's purse itself would need a load (load.h) at a load terminal; the
// holder can load it from the online account (CHANNEL_ONLINE_ACCOUNT).
//
// Threads: as Service.
#pragma once

#include <cstdint>

#include "citycard/backend/calendar.h"
#include "citycard/backend/cards.h"
#include "citycard/backend/issuance.h"
#include "citycard/backend/ledger.h"
#include "citycard/backend/store.h"
#include "citycard/backend/users.h"
#include "citycard/protocol/wire.h"

namespace citycard::backend {

class PosRefundService {
 public:
  PosRefundService(Store& store, Ledger& ledger, Cards& cards, Issuance& issuance, Users& users,
                   const Calendar& calendar)
      : store_(store),
        ledger_(ledger),
        cards_(cards),
        issuance_(issuance),
        users_(users),
        calendar_(calendar) {}

  citycard::wire::Envelope refund(const citycard::wire::Envelope& request);

  // What refunds took from merchant_id's payable, all time (for reports and tests).
  Result<std::int64_t> refunded_fen(const std::string& merchant_id) const;

 private:
  Store& store_;
  Ledger& ledger_;
  Cards& cards_;
  Issuance& issuance_;
  Users& users_;
  const Calendar& calendar_;
};

}  // namespace citycard::backend
