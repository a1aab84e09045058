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
