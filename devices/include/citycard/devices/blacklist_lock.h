// The blacklist lock (STANDARDS.md, PSAM commands): a terminal that finds a card on its
// blacklist blocks the card's application, with a MAC only the issuer's keys can make:
//
//   PSAM  80 1A usage ver 10   diversify the application maintenance master by the serial
//   card  00 84 00 00 04       GET CHALLENGE
//   PSAM  80 FA 05 00 Lc       MAC over IV = challenge | 00 00 00 00 and the command header
//                              84 1E 00 P2 04 (crypto::secure_messaging_mac)
//   card  84 1E 00 P2 04 MAC   APPLICATION BLOCK (P2 00 temporary, 01 permanent)
//
// The card checks the MAC with its own DAMK; from then on SELECT answers 6283 (temporary) or
// 9303 (permanent). Precondition: the card's application is selected on `card`.
#pragma once

#include <cstdint>

#include "citycard/devices/card_link.h"
#include "citycard/devices/purchase.h"
#include "citycard/devices/sam_client.h"
#include "citycard/protocol/crypto.h"
#include "citycard/protocol/purse.h"

namespace citycard::devices {

// ok() when the card answered 9000 to APPLICATION BLOCK; otherwise the refusal says which
// step failed (a torn link: kTorn; a SAM that refused: kSamError; the card: kCardError with
// its status word). duration_us is not filled in.
PurchaseResult lock_application(CardLink& card, SamClient& sam, const protocol::Serial8& serial,
                                protocol::crypto::Algorithm algorithm, std::uint8_t key_version,
                                bool permanent);

}  // namespace citycard::devices
