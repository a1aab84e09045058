#include "citycard/protocol/personalisation.h"

namespace citycard::protocol {

const char* card_type_name(CardType t) {
  switch (t) {
    case CardType::kAdult: return "adult";
    case CardType::kStudent: return "student";
    case CardType::kElder: return "elder";
    case CardType::kStaff: return "staff";
  }
  return "unknown";
}

crypto::Key16 terminal_batch_key(const crypto::Key16& batch_master, const TerminalId& terminal) {
  Serial8 d{0, 0, terminal[0], terminal[1], terminal[2], terminal[3], terminal[4], terminal[5]};
  return crypto::diversify(crypto::Algorithm::kTripleDes, batch_master, d);
}

void derive_card_keys(const IssuerKeys& keys, crypto::Algorithm alg, CardImage& card) {
  card.algorithm = alg;
  card.key_version = keys.key_version;
  card.dpk = crypto::diversify(alg, keys.purchase, card.serial);
  card.dlk = crypto::diversify(alg, keys.load, card.serial);
  card.dtk = crypto::diversify(alg, keys.tac, card.serial);
  card.damk = crypto::diversify(alg, keys.maintenance, card.serial);
}

}  // namespace citycard::protocol
