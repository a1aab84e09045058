#include "citycard/backend/keys.h"

#include <gtest/gtest.h>

#include "schema.h"
#include "test_city.h"

namespace citycard::backend {
namespace {

namespace crypto = protocol::crypto;

std::unique_ptr<Store> fresh(const std::string& path) {
  auto s = Store::open(path);
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_TRUE(s.value()->migrate(schema::migrations()).is_ok());
  return std::move(s).value();
}

TEST(Keys, SameSeedSameKeysDifferentSeedDifferentKeys) {
  const auto a = Keys::derive_issuer_keys(7, 1);
  const auto b = Keys::derive_issuer_keys(7, 1);
  const auto c = Keys::derive_issuer_keys(8, 1);
  const auto d = Keys::derive_issuer_keys(7, 2);
  EXPECT_EQ(a.purchase, b.purchase);
  EXPECT_EQ(a.tac, b.tac);
  EXPECT_NE(a.purchase, c.purchase);
  EXPECT_NE(a.purchase, d.purchase);
  // The four masters of one version are distinct from each other.
  EXPECT_NE(a.purchase, a.load);
  EXPECT_NE(a.load, a.tac);
  EXPECT_NE(a.tac, a.batch);
  EXPECT_EQ(d.key_version, 2);
}

TEST(Keys, DerivationIsPinned) {
  // Pins our KDF, so a change (which would orphan every stored database's cards) is seen.
  // Oracle: python3 -c "import hashlib,struct; print(hashlib.sha256(b'citycard issuer key'
  //   + struct.pack('>Q', 1) + bytes([1]) + b'tac').hexdigest()[:32])"
  EXPECT_EQ(to_hex(Keys::derive_issuer_keys(1, 1).tac), "30725d81778bf632b43b937aa374a9f9");
}

TEST(Keys, PersistedAcrossReopenAndSeedMismatchRefused) {
  testing::TempDir dir;
  const std::string path = dir.file("keys.db");
  protocol::IssuerKeys first;
  {
    auto store = fresh(path);
    auto keys = Keys::open(*store, 99);
    ASSERT_TRUE(keys.is_ok()) << keys.status().to_string();
    EXPECT_EQ((*keys)->current_version(), 1);
    first = *(*keys)->issuer(1);
    ASSERT_TRUE((*keys)->create_version(2).is_ok());
    EXPECT_EQ((*keys)->current_version(), 2);
  }
  {
    auto store = fresh(path);
    auto keys = Keys::open(*store, 99);
    ASSERT_TRUE(keys.is_ok()) << keys.status().to_string();
    EXPECT_EQ((*keys)->current_version(), 2);
    const auto again = *(*keys)->issuer(1);
    EXPECT_EQ(again.purchase, first.purchase);
    EXPECT_EQ(again.load, first.load);
    EXPECT_EQ(again.tac, first.tac);
    EXPECT_EQ(again.batch, first.batch);
  }
  auto store = fresh(path);
  auto wrong = Keys::open(*store, 100);
  ASSERT_FALSE(wrong.is_ok());
  EXPECT_EQ(wrong.status().code(), Errc::kInvalidArgument);
}

TEST(Keys, DerivedKeysAreProtocolsDerivations) {
  auto store = fresh(":memory:");
  auto keys = std::move(Keys::open(*store, 5)).value();
  const protocol::IssuerKeys master = *keys->issuer(1);
  const protocol::Serial8 serial{0x31, 0x00, 0, 0, 0, 0, 0, 0x42};
  for (auto alg : {crypto::Algorithm::kTripleDes, crypto::Algorithm::kSm4}) {
    protocol::CardImage via_backend;
    via_backend.serial = serial;
    ASSERT_TRUE(keys->derive_card_keys(1, alg, via_backend).is_ok());
    protocol::CardImage direct;
    direct.serial = serial;
    protocol::derive_card_keys(master, alg, direct);
    EXPECT_EQ(via_backend.dpk, direct.dpk);
    EXPECT_EQ(via_backend.dtk, direct.dtk);
    EXPECT_EQ(*keys->card_tac_key(1, alg, serial), direct.dtk);
  }
  const protocol::TerminalId t{0x31, 0, 0, 0, 0, 1};
  EXPECT_EQ(*keys->terminal_batch_key(1, t), protocol::terminal_batch_key(master.batch, t));
  EXPECT_EQ(keys->card_tac_key(9, crypto::Algorithm::kTripleDes, serial).status().code(),
            Errc::kNotFound);
  EXPECT_EQ(keys->terminal_batch_key(9, t).status().code(), Errc::kNotFound);
}

}  // namespace
}  // namespace citycard::backend

namespace citycard::backend {
namespace {

TEST(Keys, RotateMakesTheNextVersionCurrentAndKeepsTheOldOnes) {
  testing::TempDir dir;
  const std::string path = dir.file("rotate.db");
  {
    auto store = fresh(path);
    auto keys = std::move(Keys::open(*store, 3)).value();
    auto v2 = keys->rotate();
    ASSERT_TRUE(v2.is_ok()) << v2.status().to_string();
    EXPECT_EQ(*v2, 2);
    EXPECT_EQ(keys->current_version(), 2);
    EXPECT_EQ(keys->versions(), (std::vector<std::uint8_t>{1, 2}));
    EXPECT_EQ(keys->issuer(2)->tac, Keys::derive_issuer_keys(3, 2).tac);
  }
  auto store = fresh(path);
  auto keys = std::move(Keys::open(*store, 3)).value();
  EXPECT_EQ(keys->versions(), (std::vector<std::uint8_t>{1, 2}));
  // The masters that are not stored come back from the seed.
  EXPECT_EQ(keys->issuer(1)->maintenance, Keys::derive_issuer_keys(3, 1).maintenance);
  EXPECT_NE(keys->issuer(1)->maintenance, keys->issuer(2)->maintenance);
  ASSERT_TRUE(keys->create_version(255).is_ok());
  EXPECT_EQ(keys->rotate().status().code(), Errc::kTooLarge);
}

TEST(Keys, ScheduledTacKeyGivesTheSameTacsAsTheCardsOwnKey) {
  auto store = fresh(":memory:");
  auto keys = std::move(Keys::open(*store, 5)).value();
  const protocol::Serial8 serial{0x31, 0x00, 0, 0, 0, 0, 0x12, 0x34};
  const protocol::TerminalId t{0x31, 0, 0, 0, 0, 9};
  const protocol::DateTime7 when{0x20, 0x24, 0x01, 0x02, 0x03, 0x04, 0x05};
  for (auto alg : {crypto::Algorithm::kTripleDes, crypto::Algorithm::kSm4}) {
    protocol::CardImage card;
    card.serial = serial;
    ASSERT_TRUE(keys->derive_card_keys(1, alg, card).is_ok());
    const auto expected =
        crypto::purchase_tac(crypto::tac_key(alg, card.dtk), 150, 0x06, t, 77, when);
    auto key = keys->card_tac_mac_key(1, alg, serial);
    ASSERT_TRUE(key.is_ok());
    EXPECT_EQ(crypto::purchase_tac(*key, 150, 0x06, t, 77, when), expected);
  }
  EXPECT_EQ(keys->card_tac_mac_key(7, crypto::Algorithm::kTripleDes, serial).status().code(),
            Errc::kNotFound);
}

// Rotation end to end: after it, new cards and new PSAMs are v2; cards and terminals of v1
// keep working, and their records (and batches signed by v1 PSAMs) ingest and verify.
class KeyRotationTest : public testing::BackendTest {};

TEST_F(KeyRotationTest, OldVersionsStillVerifyOldRecordsAfterRotation) {
  testing::TestCard old_card = issue(1'000);
  testing::TestTerminal old_bus = add_terminal("bus-co", "15");
  // A v1 record made before the rotation and uploaded after it (a late upload).
  const auto late = purchase(old_card, old_bus, 100, now());

  ASSERT_TRUE(backend->keys().rotate().is_ok());
  testing::TestCard new_card = issue(1'000);
  testing::TestTerminal new_bus = add_terminal("bus-co", "16");
  EXPECT_EQ(old_card.image.key_version, 1);
  EXPECT_EQ(new_card.image.key_version, 2);
  EXPECT_EQ(old_bus.psam.key_version, 1);
  EXPECT_EQ(new_bus.psam.key_version, 2);
  EXPECT_EQ(backend->issuance().terminal(new_bus.psam.terminal_id)->key_version, 2);
  EXPECT_NE(old_card.image.dtk, new_card.image.dtk);

  // v1 card, v1 PSAM (its batch key is v1); v2 card on the v1 terminal; v1 card on the v2
  // terminal: what each card's TAC and each PSAM's signature were made with is what counts.
  const IngestResult a =
      backend->upload(make_batch(old_bus, {late, purchase(old_card, old_bus, 100, now()),
                                           purchase(new_card, old_bus, 50, now())}));
  ASSERT_TRUE(a.ok()) << a.message;
  EXPECT_EQ(a.ack.accepted(), 3u);
  EXPECT_EQ(a.ack.problems_size(), 0);
  const IngestResult b = backend->upload(make_batch(
      new_bus, {purchase(old_card, new_bus, 10, now()), purchase(new_card, new_bus, 20, now())}));
  ASSERT_TRUE(b.ok()) << b.message;
  EXPECT_EQ(b.ack.accepted(), 2u);
  EXPECT_EQ(card(old_card).balance_fen, 1'000 - 210);
  EXPECT_EQ(card(new_card).balance_fen, 1'000 - 70);

  // A record that claims v2 for a v1 card does not verify: the version is part of the key.
  auto forged = purchase(old_card, new_bus, 10, now());
  forged.set_key_version(2);
  const IngestResult c = backend->upload(make_batch(new_bus, {forged}));
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c.ack.problems_size(), 1);
  EXPECT_EQ(c.ack.problems(0).code(), citycard::wire::BAD_TAC);
}

}  // namespace
}  // namespace citycard::backend
