// The fast DES path against the EVP implementation it replaced (itself held to the openssl
// command line in crypto_test.cpp): byte-identical on random keys and inputs of every length.
#include "citycard/protocol/des.h"

#include <gtest/gtest.h>

#include <random>

#include "citycard/protocol/crypto.h"
#include "citycard/protocol/crypto_evp.h"

namespace citycard::protocol::crypto {
namespace {

template <std::size_t N>
std::array<std::uint8_t, N> random_array(std::mt19937_64& rng) {
  std::array<std::uint8_t, N> a;
  for (auto& b : a) b = static_cast<std::uint8_t>(rng());
  return a;
}

TEST(FastDes, MatchesEvpOnRandomKeysAndEveryLength) {
  std::mt19937_64 rng(42);  // fixed: random inputs, repeatable test
  for (int round = 0; round < 300; ++round) {
    const auto k8 = random_array<8>(rng);
    const auto k16 = random_array<16>(rng);
    const auto iv = random_array<8>(rng);
    Bytes data(static_cast<std::size_t>(round % 70));
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    const Block8 block = random_array<8>(rng);

    ASSERT_EQ(DesKey(k8).mac(data), evp::des_mac(k8, data)) << "round " << round;
    ASSERT_EQ(TdesKey(k16).mac(data), evp::tdes_mac(k16, data)) << "round " << round;
    ASSERT_EQ(TdesKey(k16).mac(iv, data), evp::tdes_mac(k16, data, iv)) << "round " << round;
    ASSERT_EQ(TdesKey(k16).encrypt(block), evp::tdes_encrypt(k16, block));
    Key16 kk;
    for (int i = 0; i < 8; ++i) kk[i] = kk[i + 8] = k8[i];
    ASSERT_EQ(DesKey(k8).encrypt(block), evp::tdes_encrypt(kk, block)) << "K||K is single DES";
  }
}

TEST(FastDes, PublicFunctionsAgreeInBothModes) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 50; ++round) {
    const auto k16 = random_array<16>(rng);
    const auto serial = random_array<8>(rng);
    const auto random = random_array<4>(rng);
    const auto terminal = random_array<6>(rng);
    const auto dt = random_array<7>(rng);
    for (Algorithm alg : {Algorithm::kTripleDes, Algorithm::kSm4}) {
      auto compute = [&] {
        const Key16 dk = diversify(alg, k16, serial);
        const SessionKey sk = purchase_session_key(alg, dk, random, 3, 0x10203);
        const SessionKey lk = load_session_key(alg, dk, random, 9);
        return to_hex(dk) + to_hex(purchase_mac1(sk, 123, 6, terminal, dt)) +
               to_hex(purchase_mac2(sk, 123)) +
               to_hex(purchase_tac(tac_key(alg, dk), 123, 6, terminal, 77, dt)) +
               to_hex(load_mac1(lk, 1000, 500, 2, terminal)) +
               to_hex(load_mac2(lk, 500, 2, terminal, dt)) +
               to_hex(load_tac(tac_key(alg, dk), 1500, 9, 500, 2, terminal, dt)) +
               to_hex(application_block_mac(alg, dk, random, 0)) + to_hex(tdes_mac(k16, serial)) +
               to_hex(tdes_encrypt(k16, serial));
      };
      const std::string fast = compute();
      evp::ScopedEvpCrypto baseline;
      ASSERT_TRUE(evp::evp_forced());
      EXPECT_EQ(compute(), fast) << "round " << round;
    }
  }
  EXPECT_FALSE(evp::evp_forced());
}

TEST(FastDes, MacKeyGivesTheSessionKeysMacs) {
  const auto dpk = array_from_hex<16>("11223344556677888877665544332211");
  const SessionKey sespk = purchase_session_key(Algorithm::kTripleDes, dpk,
                                                array_from_hex<4>("11223344"), 0x0000, 0x0001);
  const MacKey prepared(sespk);
  const auto terminal = array_from_hex<6>("001122334455");
  const auto dt = array_from_hex<7>("20120229135100");
  // STANDARDS.md's known answers through the prepared key.
  EXPECT_EQ(to_hex(purchase_mac1(prepared, 0x1000, txn::kPurchase, terminal, dt)), "f15cab75");
  EXPECT_EQ(to_hex(purchase_mac2(prepared, 0x1000)), "56988a13");
}

TEST(FastDes, DiversifyUnderAScheduledMasterEqualsDiversify) {
  const auto mk = array_from_hex<16>("000102030405060708090a0b0c0d0e0f");
  const auto serial = array_from_hex<8>("0000000000000001");
  EXPECT_EQ(diversify(TdesKey(mk), serial), diversify(Algorithm::kTripleDes, mk, serial));
}

// The blacklist lock's MAC: for a one-block command the 3DES CBC-MAC with IV is one 3DES
// encryption of IV XOR the padded header.
TEST(SecureMessaging, ApplicationBlockMacIsOneTdesBlockOverIvXorHeader) {
  const auto damk = array_from_hex<16>("00112233445566778899aabbccddeeff");
  const auto challenge = array_from_hex<4>("01020304");
  Block8 x = array_from_hex<8>("841e000004800000");
  const Block8 iv = array_from_hex<8>("0102030400000000");
  for (int i = 0; i < 8; ++i) x[i] = static_cast<std::uint8_t>(x[i] ^ iv[i]);
  const Block8 c = evp::tdes_encrypt(damk, x);
  EXPECT_EQ(to_hex(application_block_mac(Algorithm::kTripleDes, damk, challenge, 0x00)),
            to_hex(ByteView(c.data(), 4)));
  EXPECT_NE(application_block_mac(Algorithm::kTripleDes, damk, challenge, 0x01),
            application_block_mac(Algorithm::kTripleDes, damk, challenge, 0x00));
}

}  // namespace
}  // namespace citycard::protocol::crypto
