#include "citycard/hil/field_card.h"

#include <cstdio>

namespace citycard::hil {

FieldCard::~FieldCard() = default;

std::string CardIdentity::to_string() const {
  char head[48];
  std::snprintf(head, sizeof(head), " atqa %02x%02x sak %02x", atqa[0], atqa[1], sak);
  std::string s = "uid " + to_hex(uid) + head;
  if (!ats.empty()) s += " ats " + to_hex(ats);
  return s;
}

CardIdentity cpu_card_identity(ByteView uid) {
  CardIdentity id;
  id.uid.assign(uid.begin(), uid.end());
  id.atqa = {0x00, 0x08};
  id.sak = kSakIsoDep;
  // T0 78: FSCI 8 (256-byte frames), TA TB TC follow; TA 80: same bit rate both ways only;
  // TB 70: FWI 7 (about 38 ms), SFGI 0; TC 02: CID supported. Historical bytes "CC".
  id.ats = {0x78, 0x80, 0x70, 0x02, 0x43, 0x43};
  return id;
}

CardIdentity m1_card_identity(ByteView uid) {
  CardIdentity id;
  id.uid.assign(uid.begin(), uid.end());
  id.atqa = {0x00, 0x04};
  id.sak = kSakMifareClassic1k;
  return id;
}

}  // namespace citycard::hil
