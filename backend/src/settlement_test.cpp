#include "citycard/backend/settlement.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "citycard/backend/money.h"
#include "dates.h"
#include "money_test_util.h"

namespace citycard::backend {
namespace {

using testing::PurseCard;
using testing::TestTerminal;

TEST(MoneyMathTest, RatesRoundHalfUpAndYuanPrintExactly) {
  EXPECT_EQ(rate_of(10'000, 60), 60);
  EXPECT_EQ(rate_of(1, 5'000), 1) << "half a fen rounds up";
  EXPECT_EQ(rate_of(1, 4'999), 0);
  EXPECT_EQ(rate_of(12'345, 33), 41) << "40.7385";
  EXPECT_EQ(rate_of(std::int64_t{1} << 60, 10'000), std::int64_t{1} << 60) << "no overflow";
  EXPECT_EQ(after_discount(1'005, 1'000), 904);
  EXPECT_EQ(yuan(123'456), "1234.56");
  EXPECT_EQ(yuan(-5), "-0.05");
  EXPECT_EQ(yuan(0), "0.00");
}

TEST(MoneyMathTest, CalendarArithmeticForCycles) {
  EXPECT_EQ(dates::weekday(20240101), 0) << "a Monday";
  EXPECT_EQ(dates::weekday(20240107), 6);
  EXPECT_EQ(dates::week_first(20240107), 20240101);
  EXPECT_EQ(dates::week_first(20240101), 20240101);
  EXPECT_EQ(dates::month_last(20240215), 20240229) << "leap year";
  EXPECT_EQ(dates::month_last(20230215), 20230228);
  EXPECT_EQ(dates::add_months(20240131, 1), 20240229) << "clamped";
  EXPECT_EQ(dates::add_months(20241115, 3), 20250215);
  EXPECT_EQ(dates::add_days(20231231, 1), 20240101);
  EXPECT_EQ(dates::add_days(20240301, -1), 20240229);
  EXPECT_TRUE(dates::valid(20240229));
  EXPECT_FALSE(dates::valid(20230229));
}

class SettlementTest : public testing::MoneyTest {
 protected:
  void SetUp() override {
    MoneyTest::SetUp();
    ASSERT_TRUE(
        backend->merchants()
            .create_deployer(admin, {"dep", "POS Deployer Co", "CCB", "6227001", "Deployer"})
            .is_ok());
    MerchantParams shop = merchant("shop", MerchantKind::kRetail, SettlementCycle::kDaily);
    shop.txn_fee_bp = 60;
    shop.deployer_id = "dep";
    shop.deployer_share_bp = 3'000;
    shop.recharge_enabled = true;
    shop.recharge_fee_bp = 50;
    shop.points_coefficient_milli = 1'000;
    add_merchant(shop);
    MerchantParams bus = merchant("bus", MerchantKind::kTransit, SettlementCycle::kWeekly);
    bus.txn_fee_bp = 20;
    add_merchant(bus);
    MerchantParams metro = merchant("metro", MerchantKind::kTransit, SettlementCycle::kMonthly);
    metro.txn_fee_bp = 15;
    add_merchant(metro);
    shop_pos = terminal("shop");
    bus_validator = terminal("bus", "15");
    metro_gate = terminal("metro", "L1");
    for (int i = 0; i < 6; ++i) cards.push_back(issue_card(90'000));
    ASSERT_TRUE(backend->merchants().top_up_quota(fin1, "shop", 1'000'000).is_ok());
    clerk = add_user("clerk", Role::kMerchantOperator, "shop");
  }

  // One day of a small city: purchases everywhere, and a POS recharge every third day.
  void day(int d) {
    auto& c = cards[static_cast<std::size_t>(d) % cards.size()];
    auto& c2 = cards[static_cast<std::size_t>(d + 1) % cards.size()];
    upload(shop_pos, {purchase(c.card, shop_pos, 1'000 + 37 * d, now()),
                      purchase(c2.card, shop_pos, 555, now())});
    upload(bus_validator, {purchase(c.card, bus_validator, 200, now()),
                           purchase(c2.card, bus_validator, 200, now()),
                           purchase(c.card, bus_validator, 100, now())});
    upload(metro_gate, {purchase(c2.card, metro_gate, 300 + d, now())});
    if (d % 3 == 0) {
      OrderRequest r;
      r.order_id = "POS-" + std::to_string(d);
      r.channel = Channel::kMerchantPos;
      r.merchant_id = "shop";
      r.card = c.serial();
      r.amount_fen = 2'000;
      ASSERT_TRUE(backend->recharge().create_order(clerk, r).is_ok());
      auto done = load(c, r.order_id, 2'000);
      ASSERT_TRUE(done.is_ok()) << done.status().to_string();
    }
  }
  void upload(TestTerminal& t, std::vector<citycard::wire::SwipeRecord> records) {
    for (const auto& r : records) swiped[t.operator_id] += r.amount_fen();
    const IngestResult r = backend->upload(make_batch(t, std::move(records)));
    ASSERT_TRUE(r.ok()) << r.message;
    ASSERT_EQ(r.ack.problems_size(), 0) << r.ack.DebugString();
  }
  // Prepare (fin1), approve (fin2), file, bank, reconcile: the daily routine.
  SettlementBatch settle_today() {
    auto b = backend->settlement().prepare(fin1);
    EXPECT_TRUE(b.is_ok()) << b.status().to_string();
    if (!b.is_ok()) return {};
    EXPECT_TRUE(backend->settlement().approve(fin2, b->id).is_ok());
    auto file = backend->settlement().write_bank_file(fin1, b->id);
    EXPECT_TRUE(file.is_ok()) << file.status().to_string();
    auto paid = backend->bank().execute_payout_file(file->contents);
    EXPECT_TRUE(paid.is_ok()) << paid.status().to_string();
    auto rec = backend->settlement().reconcile_bank(fin1, backend->calendar().today_yyyymmdd());
    EXPECT_TRUE(rec.is_ok()) << rec.status().to_string();
    EXPECT_TRUE(rec->differences.empty()) << rec->differences[0].detail;
    EXPECT_EQ(rec->payouts_confirmed_fen, file->total_fen);
    return *backend->settlement().batch(fin1, b->id);
  }

  std::vector<PurseCard> cards;
  TestTerminal shop_pos, bus_validator, metro_gate;
  Session clerk;
  std::map<std::string, std::int64_t> swiped;
};

TEST_F(SettlementTest, AMonthOfDailyWeeklyAndMonthlyCyclesReconciles) {
  // 2024-01-01 is a Monday. January, then up to Monday 5 February.
  std::map<std::string, std::int64_t> gross, fee, net, lines;
  std::map<std::string, std::vector<std::pair<int, int>>> periods;
  std::int64_t deployer_paid = 0, shares = 0, commission = 0, points_cost = 0, paid_out = 0;
  const std::int64_t cash_before = ledger(account::kIssuerCash);
  for (int d = 0; d < 35; ++d) {
    if (d < 31) day(d);
    if (d == 10) {
      ASSERT_TRUE(
          backend->merchants().redeem_for_gift(clerk, "shop", cards[0].serial(), 20).is_ok());
    }
    next_day();
    const SettlementBatch b = settle_today();
    for (const SettlementLine& l : b.lines) {
      if (l.party_kind == PartyKind::kDeployer) {
        EXPECT_EQ(l.party_id, "dep");
        deployer_paid += l.net_fen;
      } else {
        gross[l.party_id] += l.gross_fen;
        fee[l.party_id] += l.fee_fen;
        net[l.party_id] += l.net_fen;
        ++lines[l.party_id];
        periods[l.party_id].emplace_back(l.period_from, l.period_to);
        commission += l.commission_fen;
        shares += l.deployer_share_fen;
        points_cost += l.points_cost_fen;
        // Each line's figures add up, to the fen.
        EXPECT_EQ(l.net_fen, l.gross_fen - l.fee_fen + l.commission_fen + l.points_redeemed_fen -
                                 l.points_cost_fen);
        EXPECT_EQ(l.fee_fen,
                  rate_of(l.gross_fen, backend->merchants().find(l.party_id)->txn_fee_bp));
      }
      if (l.payout == PayoutState::kPaid) paid_out += l.net_fen;
    }
  }
  // Cycles, the last settlement run on Monday 5 February: the shop daily through Sunday
  // 4 February, the bus for five whole weeks, the metro for January.
  EXPECT_EQ(lines["shop"], 35);
  EXPECT_EQ(lines["bus"], 5);
  EXPECT_EQ(periods["bus"].front(), std::make_pair(20240101, 20240107));
  EXPECT_EQ(periods["bus"].back(), std::make_pair(20240129, 20240204));
  ASSERT_EQ(lines["metro"], 1);
  EXPECT_EQ(periods["metro"][0], std::make_pair(20240101, 20240131));
  // Everything swiped was settled exactly once; nothing is left payable.
  for (const std::string m : {"shop", "bus", "metro"}) {
    EXPECT_EQ(gross[m], swiped[m]) << m;
    EXPECT_EQ(balance(account::payable(m)), 0) << m;
  }
  // Fees went to income and the deployer (paid the batch after each share); payouts left the
  // bank.
  EXPECT_EQ(-balance(account::kFeeIncome), fee["shop"] + fee["bus"] + fee["metro"] - shares);
  EXPECT_EQ(deployer_paid - balance(account::deployer_payable("dep")), shares);
  EXPECT_GT(deployer_paid, 0);
  EXPECT_GT(commission, 0);
  EXPECT_GT(points_cost, 0);
  EXPECT_EQ(balance(account::kBankClearing), 0) << "every payout confirmed";
  EXPECT_EQ(paid_out, net["shop"] + net["bus"] + net["metro"] + deployer_paid);
  EXPECT_EQ(balance(account::kPointsRedeemedDue), 0) << "the gift was paid to the shop";
  EXPECT_EQ(ledger(account::kIssuerCash), cash_before - paid_out)
      << "the month's only cash movements are the payouts";
  // Every clearing record is marked reconciled.
  auto q = backend->store().query("SELECT count(*) FROM swipes WHERE reconciled = 0");
  ASSERT_TRUE(*q.step());
  EXPECT_EQ(q.column_int64(0), 0);
}

TEST_F(SettlementTest, ReviewAndApprovalAreEnforced) {
  day(0);
  next_day();
  auto draft = backend->settlement().prepare(fin1);
  ASSERT_TRUE(draft.is_ok());
  EXPECT_EQ(draft->state, BatchState::kDraft);
  EXPECT_EQ(backend->settlement().prepare(fin2).status().code(), Errc::kRejected)
      << "one draft at a time";
  // No bank file before approval.
  const auto postings = posting_count();
  EXPECT_EQ(backend->settlement().write_bank_file(fin1, draft->id).status().code(),
            Errc::kRejected);
  // Four eyes: the preparer does not approve.
  EXPECT_EQ(backend->settlement().approve(fin1, draft->id).code(), Errc::kPermissionDenied);
  EXPECT_EQ(backend->settlement().approve(clerk, draft->id).code(), Errc::kPermissionDenied);
  EXPECT_EQ(posting_count(), postings);
  ASSERT_TRUE(backend->settlement().approve(fin2, draft->id).is_ok());
  const auto approved = posting_count();
  EXPECT_EQ(backend->settlement().approve(admin, draft->id).code(), Errc::kRejected)
      << "approved twice";
  EXPECT_EQ(posting_count(), approved);
  EXPECT_EQ(backend->settlement().cancel(fin1, draft->id).code(), Errc::kRejected);
  // The merchant sees its own lines only.
  auto mine = backend->settlement().batch(clerk, draft->id);
  ASSERT_TRUE(mine.is_ok());
  for (const SettlementLine& l : mine->lines) EXPECT_EQ(l.party_id, "shop");
  EXPECT_FALSE(mine->lines.empty());
  auto statements = backend->settlement().statements(clerk, "shop", {});
  EXPECT_EQ(statements.status().code(), Errc::kPermissionDenied) << "operators: no statements";
}

TEST_F(SettlementTest, TheBankFileHasTheDocumentedLayout) {
  options.money.settlement.file_dir = ::testing::TempDir();
  cards.clear();
  swiped.clear();
  SetUp();  // again, on a new backend with the option
  day(0);
  next_day();
  auto b = backend->settlement().prepare(fin1);
  ASSERT_TRUE(b.is_ok());
  ASSERT_TRUE(backend->settlement().approve(fin2, b->id).is_ok());
  auto f = backend->settlement().write_bank_file(fin1, b->id);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  std::istringstream in(f->contents);
  std::string line;
  std::vector<std::string> rows;
  while (std::getline(in, line)) rows.push_back(line);
  ASSERT_GE(rows.size(), 4u);
  EXPECT_EQ(rows[0], "# citycard batch payment file v1");
  EXPECT_EQ(rows[1], "H," + std::to_string(b->id) + ",20240102," + std::to_string(f->lines) + "," +
                         std::to_string(f->total_fen));
  EXPECT_EQ(rows.back(), "T," + std::to_string(f->lines) + "," + std::to_string(f->total_fen));
  const SettlementLine* shop = nullptr;
  for (const SettlementLine& l : b->lines) {
    if (l.party_id == "shop") shop = &l;
  }
  ASSERT_NE(shop, nullptr);
  const std::string expected = "D,1,CC" + std::to_string(b->id) + "-" + std::to_string(shop->id) +
                               "-1,merchant,shop,shop Ltd,ICBC,62224000115," +
                               std::to_string(shop->net_fen) + "," + yuan(shop->net_fen) +
                               ",CNY,settlement 20240101-20240101";
  EXPECT_NE(f->contents.find(expected), std::string::npos) << f->contents;
  ASSERT_FALSE(f->path.empty());
  std::ifstream disk(f->path);
  std::stringstream read;
  read << disk.rdbuf();
  EXPECT_EQ(read.str(), f->contents);
}

TEST_F(SettlementTest, BouncedPayoutsAndStrangersOnTheStatementAreListed) {
  MerchantParams nobank = merchant("nobank");
  nobank.bank_account = "";
  add_merchant(nobank);
  TestTerminal pos = terminal("nobank");
  upload(pos, {purchase(cards[0].card, pos, 5'000, now())});
  next_day();
  auto b = backend->settlement().prepare(fin1);
  ASSERT_TRUE(b.is_ok());
  ASSERT_TRUE(backend->settlement().approve(fin2, b->id).is_ok());
  auto f = backend->settlement().write_bank_file(fin1, b->id);
  ASSERT_TRUE(f.is_ok());
  ASSERT_TRUE(backend->bank().execute_payout_file(f->contents).is_ok());
  const int today = backend->calendar().today_yyyymmdd();
  backend->sim_bank()->add_statement_line(
      {today, "B999", StatementKind::kPaymentIn, "ORDER-WE-NEVER-MADE", 123});
  auto rec = backend->settlement().reconcile_bank(fin1, today);
  ASSERT_TRUE(rec.is_ok()) << rec.status().to_string();
  ASSERT_EQ(rec->differences.size(), 2u);
  std::map<DifferenceKind, const Difference*> by_kind;
  for (const Difference& d : rec->differences) by_kind[d.kind] = &d;
  ASSERT_TRUE(by_kind.count(DifferenceKind::kPayoutReturned));
  EXPECT_EQ(by_kind[DifferenceKind::kPayoutReturned]->bank_fen, 5'000);
  ASSERT_TRUE(by_kind.count(DifferenceKind::kMissingInBooks));
  EXPECT_EQ(by_kind[DifferenceKind::kMissingInBooks]->reference, "ORDER-WE-NEVER-MADE");
  EXPECT_EQ(balance(account::kBankClearing), -5'000) << "the bounced payout is still owed";
  // Fixed account, next file: only the bounced payout goes again.
  MerchantParams fixed = nobank;
  fixed.bank_account = "6222999";
  ASSERT_TRUE(backend->merchants().update(admin, fixed).is_ok());
  auto again = backend->settlement().write_bank_file(fin1, b->id);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->lines, 1);
  EXPECT_EQ(again->total_fen, 5'000);
  EXPECT_NE(again->contents.find(",6222999,5000,50.00,"), std::string::npos) << again->contents;
  ASSERT_TRUE(backend->bank().execute_payout_file(again->contents).is_ok());
  auto rec2 = backend->settlement().reconcile_bank(fin1, today);
  ASSERT_TRUE(rec2.is_ok());
  ASSERT_EQ(rec2->differences.size(), 2u) << "the stranger, and the first attempt's bounce";
  EXPECT_EQ(rec2->payouts_confirmed_fen, 5'000);
  EXPECT_EQ(balance(account::kBankClearing), 0);
  EXPECT_EQ(backend->settlement().batch(fin1, b->id)->state, BatchState::kReconciled);
  // A payout in a file that the bank never executed is missing in the bank.
  upload(pos, {purchase(cards[1].card, pos, 700, now())});
  next_day();
  auto b2 = backend->settlement().prepare(fin1);
  ASSERT_TRUE(backend->settlement().approve(fin2, b2->id).is_ok());
  ASSERT_TRUE(backend->settlement().write_bank_file(fin1, b2->id).is_ok());
  auto rec3 = backend->settlement().reconcile_bank(fin1, backend->calendar().today_yyyymmdd());
  ASSERT_TRUE(rec3.is_ok());
  ASSERT_FALSE(rec3->differences.empty());
  for (const Difference& d : rec3->differences) {
    EXPECT_EQ(d.kind, DifferenceKind::kMissingInBank);
    EXPECT_EQ(d.what, StatementKind::kPayoutOut);
  }
}

TEST_F(SettlementTest, OnlinePaymentsAndRefundsAreReconciledWithTheStatement) {
  PurseCard c = issue_card(0);
  OrderRequest r;
  r.order_id = "WEB-1";
  r.channel = Channel::kBank;
  r.card = c.serial();
  r.amount_fen = 3'000;
  ASSERT_TRUE(backend->recharge().create_customer_order("web", r).is_ok());
  r.order_id = "WEB-2";
  ASSERT_TRUE(backend->recharge().create_customer_order("web", r).is_ok());
  advance_s(10);
  ASSERT_TRUE(backend->poll().is_ok());
  ASSERT_TRUE(backend->recharge().reverse(fin1, "WEB-2", "customer asked").is_ok());
  auto rec = backend->settlement().reconcile_bank(fin1, backend->calendar().today_yyyymmdd());
  ASSERT_TRUE(rec.is_ok());
  EXPECT_TRUE(rec->differences.empty()) << rec->differences[0].detail;
  EXPECT_EQ(rec->matched, 3) << "two payments in, one refund out";
}

TEST_F(SettlementTest, TerminalBatchTotalsAreComparedWithWhatWasAccepted) {
  auto r1 = purchase(cards[0].card, shop_pos, 300, now());
  auto forged = purchase(cards[1].card, shop_pos, 400, now());
  forged.set_amount_fen(4'000);
  const IngestResult r = backend->upload(make_batch(shop_pos, {r1, forged}));
  ASSERT_TRUE(r.ok());
  upload(bus_validator, {purchase(cards[2].card, bus_validator, 200, now())});
  auto rec = backend->settlement().reconcile_terminals(fin1, backend->calendar().today_yyyymmdd());
  ASSERT_TRUE(rec.is_ok()) << rec.status().to_string();
  EXPECT_EQ(rec->batches, 2);
  EXPECT_EQ(rec->declared_fen, 4'500);
  EXPECT_EQ(rec->accepted_fen, 500);
  ASSERT_EQ(rec->differences.size(), 1u);
  const TerminalDifference& d = rec->differences[0];
  EXPECT_EQ(d.terminal, shop_pos.psam.terminal_id);
  EXPECT_EQ(d.declared_fen, 4'300);
  EXPECT_EQ(d.accepted_fen, 300);
  EXPECT_EQ(d.detail, "BAD_TAC x1");
  EXPECT_EQ(backend->settlement().reconcile_terminals(clerk, 20240101).status().code(),
            Errc::kPermissionDenied);
}

}  // namespace
}  // namespace citycard::backend
