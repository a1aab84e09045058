#include "citycard/backend/issuance.h"

#include <gtest/gtest.h>

#include <set>

#include "test_city.h"

namespace citycard::backend {
namespace {

namespace crypto = protocol::crypto;
using IssuanceTest = testing::BackendTest;

TEST_F(IssuanceTest, OpeningBalanceAndDepositArePostedAndConservationHolds) {
  const auto before = *backend->ledger().posting_count();
  testing::TestCard c = issue(5'000, 2'000);
  EXPECT_EQ(balance(account::kIssuerCash), 7'000);
  EXPECT_EQ(balance(account::kCardFloat), -5'000);
  EXPECT_EQ(balance(account::kDeposits), -2'000);
  EXPECT_EQ(*backend->ledger().posting_count(), before + 1);
  EXPECT_TRUE(backend->check_conservation().is_ok());

  const CardRecord r = card(c);
  EXPECT_EQ(r.balance_fen, 5'000);
  EXPECT_EQ(r.deposit_fen, 2'000);
  EXPECT_EQ(r.status, CardStatus::kActive);
  EXPECT_FALSE(r.last_counter.has_value());
  EXPECT_EQ(r.card_number, c.image.card_number);
  EXPECT_EQ(r.key_version, backend->keys().current_version());
  EXPECT_EQ(c.image.balance_fen, 5'000u);
}

TEST_F(IssuanceTest, ZeroBalanceCardPostsNothing) {
  const auto before = *backend->ledger().posting_count();
  issue(0, 0);
  EXPECT_EQ(*backend->ledger().posting_count(), before);
  EXPECT_EQ(*backend->issuance().card_count(), 1);
}

TEST_F(IssuanceTest, SerialsAreUniqueAndAreTheCardNumberInBcd) {
  std::set<std::string> serials;
  for (int i = 0; i < 20; ++i) {
    testing::TestCard c = issue(100);
    EXPECT_EQ(c.image.card_number.size(), 16u);
    EXPECT_EQ(c.image.card_number.substr(0, 4), "3100");
    EXPECT_EQ(to_hex(c.image.serial), c.image.card_number);
    serials.insert(to_hex(c.image.serial));
  }
  EXPECT_EQ(serials.size(), 20u);
}

TEST_F(IssuanceTest, CardKeysAreDiversifiedFromTheIssuerMasters) {
  CardParams p;
  p.algorithm = crypto::Algorithm::kSm4;
  p.opening_balance_fen = 1;
  auto img = backend->issue_card(p);
  ASSERT_TRUE(img.is_ok());
  const auto master = *backend->keys().issuer(img->key_version);
  EXPECT_EQ(img->algorithm, crypto::Algorithm::kSm4);
  EXPECT_EQ(img->dtk, crypto::diversify(crypto::Algorithm::kSm4, master.tac, img->serial));
  EXPECT_EQ(img->dpk, crypto::diversify(crypto::Algorithm::kSm4, master.purchase, img->serial));
  EXPECT_EQ(img->dlk, crypto::diversify(crypto::Algorithm::kSm4, master.load, img->serial));
  EXPECT_EQ(card(testing::TestCard{*img, 0, 1}).algorithm, crypto::Algorithm::kSm4);
}

TEST_F(IssuanceTest, ValidityDefaultsFromTodayAndExplicitDatesAreChecked) {
  clock.advance_us(59LL * 86'400'000'000);  // 2024-02-29
  testing::TestCard c = issue(1);
  EXPECT_EQ(c.image.valid_from, protocol::date_bcd(2024, 2, 29));
  EXPECT_EQ(c.image.valid_to, protocol::date_bcd(2029, 2, 28));
  EXPECT_EQ(card(c).valid_to_yyyymmdd, 20290228);

  CardParams p;
  p.valid_from = protocol::date_bcd(2025, 1, 1);
  p.valid_to = protocol::date_bcd(2024, 1, 1);
  EXPECT_EQ(backend->issue_card(p).status().code(), Errc::kInvalidArgument);
}

TEST_F(IssuanceTest, OutOfRangeParamsAreRefusedAndNothingIsWritten) {
  const auto postings = *backend->ledger().posting_count();
  CardParams p;
  p.opening_balance_fen = options.issuance.max_balance_fen + 1;
  EXPECT_EQ(backend->issue_card(p).status().code(), Errc::kInvalidArgument);
  p.opening_balance_fen = -1;
  EXPECT_EQ(backend->issue_card(p).status().code(), Errc::kInvalidArgument);
  p.opening_balance_fen = 0;
  p.deposit_fen = -5;
  EXPECT_EQ(backend->issue_card(p).status().code(), Errc::kInvalidArgument);
  p.deposit_fen = 0;
  p.algorithm = static_cast<crypto::Algorithm>(0x09);
  EXPECT_EQ(backend->issue_card(p).status().code(), Errc::kInvalidArgument);
  EXPECT_EQ(*backend->issuance().card_count(), 0);
  EXPECT_EQ(*backend->ledger().posting_count(), postings);
}

TEST_F(IssuanceTest, UnknownCardAndTerminalAreNotFound) {
  EXPECT_EQ(backend->issuance().card(protocol::Serial8{1, 2, 3, 4, 5, 6, 7, 8}).status().code(),
            Errc::kNotFound);
  EXPECT_EQ(backend->issuance().terminal(protocol::TerminalId{1, 2, 3, 4, 5, 6}).status().code(),
            Errc::kNotFound);
}

TEST_F(IssuanceTest, RegisteredTerminalGetsItsPsamKeysAndAPayableAccount) {
  testing::TestTerminal t = add_terminal("bus-co-1", "42");
  const auto master = *backend->keys().issuer(t.psam.key_version);
  EXPECT_EQ(t.psam.purchase_master, master.purchase);
  // The blacklist lock (801A with the card's serial, then 80FA) needs the maintenance master.
  EXPECT_EQ(t.psam.maintenance_master, master.maintenance);
  EXPECT_EQ(t.psam.batch_key, protocol::terminal_batch_key(master.batch, t.psam.terminal_id));
  EXPECT_EQ(t.psam.next_sequence, 1u);
  EXPECT_EQ(balance(account::payable("bus-co-1")), 0);

  auto rec = backend->issuance().terminal(t.psam.terminal_id);
  ASSERT_TRUE(rec.is_ok());
  EXPECT_EQ(rec->operator_id, "bus-co-1");
  EXPECT_EQ(rec->route, "42");
  EXPECT_EQ(rec->vehicle, "bus-42");
  EXPECT_EQ(rec->device_id, "validator");
}

TEST_F(IssuanceTest, ExplicitTerminalIdsAreUniqueAndAllocationSkipsThem) {
  // The id the allocator would hand out first.
  const protocol::TerminalId taken = array_from_hex<6>("310000000001");
  TerminalParams p;
  p.terminal_id = taken;
  p.operator_id = "metro";
  ASSERT_TRUE(backend->register_terminal(p).is_ok());
  EXPECT_EQ(backend->register_terminal(p).status().code(), Errc::kDuplicate);

  p.terminal_id.reset();
  auto allocated = backend->register_terminal(p);
  ASSERT_TRUE(allocated.is_ok()) << allocated.status().to_string();
  EXPECT_EQ(to_hex(allocated->terminal_id), "310000000002");
  EXPECT_EQ(backend->issuance().list_terminals(10)->size(), 2u);
}

TEST_F(IssuanceTest, TerminalNeedsAnOperatorAndBoundedFields) {
  TerminalParams p;
  EXPECT_EQ(backend->register_terminal(p).status().code(), Errc::kInvalidArgument);
  p.operator_id = "bus";
  p.route = std::string(options.issuance.max_text_bytes + 1, 'r');
  EXPECT_EQ(backend->register_terminal(p).status().code(), Errc::kInvalidArgument);
  EXPECT_TRUE(backend->issuance().list_terminals(10)->empty());
}

TEST_F(IssuanceTest, ListCardsIsBounded) {
  for (int i = 0; i < 5; ++i) issue(10);
  EXPECT_EQ(backend->issuance().list_cards(3)->size(), 3u);
  EXPECT_EQ(backend->issuance().list_cards(100)->size(), 5u);
  EXPECT_EQ(*backend->issuance().card_balance_sum_fen(), 50);
}

}  // namespace
}  // namespace citycard::backend
