#include "citycard/hil/field_card.h"

#include <gtest/gtest.h>

namespace citycard::hil {
namespace {

struct Counter {
  Bytes process(ByteView c) { return Bytes(c.rbegin(), c.rend()); }
  void reset() { ++resets; }
  int resets = 0;
};

struct NoReset {
  Bytes process(ByteView) { return {0x90, 0x00}; }
};

TEST(FieldCard, WrapsAnyModelThatProcessesBytes) {
  Counter model;
  auto card = iso_dep_card(model, cpu_card_identity(from_hex("01020304")));
  EXPECT_EQ(card->kind(), FieldCard::Kind::kIsoDep);
  EXPECT_EQ(to_hex(card->transceive(from_hex("0102"))), "0201");
  card->power_off();
  EXPECT_EQ(model.resets, 1) << "power-off reaches the model's reset()";

  auto owned = mifare_card(std::make_unique<NoReset>(), m1_card_identity(from_hex("0a0b0c0d")));
  EXPECT_EQ(owned->kind(), FieldCard::Kind::kMifareClassic);
  owned->power_off();  // a model without reset() is fine
  EXPECT_EQ(to_hex(owned->transceive(from_hex("30"))), "9000");
}

TEST(FieldCard, IdentitiesLookLikeTheCardsTheyStandFor) {
  const CardIdentity cpu = cpu_card_identity(from_hex("01020304"));
  EXPECT_TRUE(cpu.iso_dep());
  EXPECT_EQ(cpu.sak, 0x20);
  EXPECT_FALSE(cpu.ats.empty());
  const CardIdentity m1 = m1_card_identity(from_hex("0a0b0c0d"));
  EXPECT_FALSE(m1.iso_dep());
  EXPECT_EQ(m1.sak, 0x08);
  EXPECT_TRUE(m1.ats.empty());
  EXPECT_EQ(m1.to_string(), "uid 0a0b0c0d atqa 0004 sak 08");
}

}  // namespace
}  // namespace citycard::hil
