#include "citycard/backend/recharge.h"

#include <gtest/gtest.h>

#include "citycard/backend/money.h"
#include "money_test_util.h"

namespace citycard::backend {
namespace {

using testing::PurseCard;

class RechargeTest : public testing::MoneyTest {
 protected:
  OrderRequest counter(const std::string& id, const PurseCard& c, std::int64_t amount) {
    OrderRequest r;
    r.order_id = id;
    r.channel = Channel::kCounter;
    r.card = c.serial();
    r.amount_fen = amount;
    return r;
  }
  Recharge& recharge() { return backend->recharge(); }
};

TEST_F(RechargeTest, CounterRechargeIsPaidThenLoadedWithMac1Mac2AndTac) {
  PurseCard c = issue_card(1'000);
  const std::int64_t cash = ledger(account::kIssuerCash);
  auto o = recharge().create_order(fin1, counter("C-1", c, 5'000));
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->state, OrderState::kPaid);
  EXPECT_EQ(ledger(account::kIssuerCash), cash + 5'000);
  EXPECT_EQ(ledger(account::kPendingLoads), -5'000);
  EXPECT_EQ(card(c.card).balance_fen, 1'000) << "not on the card until the TAC";

  const LoadAuthRequest init = c.init("C-1", 5'000, load_terminal);
  auto auth = recharge().authorize_load("terminal:desk", init);
  ASSERT_TRUE(auth.is_ok()) << auth.status().to_string();
  EXPECT_EQ(recharge().order("C-1")->state, OrderState::kAuthorized);
  EXPECT_EQ(auth->datetime, now());
  auto tac = c.credit(init, *auth);
  ASSERT_TRUE(tac.is_ok()) << "the card accepts our MAC2: " << tac.status().to_string();
  auto done = recharge().confirm_load("terminal:desk", "C-1", *tac);
  ASSERT_TRUE(done.is_ok()) << done.status().to_string();
  EXPECT_EQ(done->balance_after_fen, 6'000);
  EXPECT_FALSE(done->duplicate);
  EXPECT_EQ(recharge().order("C-1")->state, OrderState::kLoaded);
  EXPECT_TRUE(recharge().order("C-1")->tac_verified);
  EXPECT_EQ(card(c.card).balance_fen, 6'000);
  EXPECT_EQ(ledger(account::kPendingLoads), 0);
  EXPECT_EQ(ledger(account::kCardFloat), -6'000);

  // A repeat of the confirmation is the same answer and moves nothing.
  const auto postings = posting_count();
  auto again = recharge().confirm_load("terminal:desk", "C-1", *tac);
  ASSERT_TRUE(again.is_ok());
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(posting_count(), postings);
}

TEST_F(RechargeTest, OrderIdsAreIdempotentAndAReuseWithOtherParametersIsAConflict) {
  PurseCard c = issue_card(0);
  auto first = recharge().create_order(fin1, counter("C-7", c, 2'000));
  ASSERT_TRUE(first.is_ok());
  const auto postings = posting_count();
  auto repeat = recharge().create_order(fin1, counter("C-7", c, 2'000));
  ASSERT_TRUE(repeat.is_ok());
  EXPECT_EQ(repeat->state, first->state);
  EXPECT_EQ(posting_count(), postings) << "a repeat takes no money twice";
  auto other = recharge().create_order(fin1, counter("C-7", c, 2'001));
  ASSERT_FALSE(other.is_ok());
  EXPECT_EQ(other.status().code(), Errc::kConflict);
  EXPECT_EQ(posting_count(), postings);
  EXPECT_EQ(ledger(account::kPendingLoads), -2'000);

  // The same holds after the load: the repeat answers the order as it stands.
  ASSERT_TRUE(load(c, "C-7", 2'000).is_ok());
  auto later = recharge().create_order(fin1, counter("C-7", c, 2'000));
  ASSERT_TRUE(later.is_ok());
  EXPECT_EQ(later->state, OrderState::kLoaded);
  EXPECT_EQ(card(c.card).balance_fen, 2'000);
}

TEST_F(RechargeTest, AWrongMac1IsRefusedAndNothingChanges) {
  PurseCard c = issue_card(100);
  ASSERT_TRUE(recharge().create_order(fin1, counter("M-1", c, 500)).is_ok());
  LoadAuthRequest init = c.init("M-1", 500, load_terminal);
  init.init.mac1[0] ^= 0x01;
  const auto postings = posting_count();
  auto auth = recharge().authorize_load("terminal:desk", init);
  ASSERT_FALSE(auth.is_ok());
  EXPECT_EQ(auth.status().code(), Errc::kBadMac);
  EXPECT_EQ(recharge().order("M-1")->state, OrderState::kPaid);
  EXPECT_EQ(posting_count(), postings);
  // A card that lies about its balance fails the same way: MAC1 covers it.
  LoadAuthRequest lying = c.init("M-1", 500, load_terminal);
  lying.init.balance_before_fen = 0;
  EXPECT_EQ(recharge().authorize_load("terminal:desk", lying).status().code(), Errc::kBadMac);
  // The audit log has both refusals.
  auto log = backend->users().audit_log(admin, {"", "load_auth", "", 10});
  ASSERT_TRUE(log.is_ok());
  ASSERT_GE(log->size(), 2u);
  EXPECT_FALSE((*log)[0].ok);
  EXPECT_NE((*log)[0].result.find("bad_mac"), std::string::npos);
}

TEST_F(RechargeTest, AForgedTacIsRefusedFlaggedAndTheLoadStaysInDoubt) {
  PurseCard c = issue_card(100);
  ASSERT_TRUE(recharge().create_order(fin1, counter("F-1", c, 700)).is_ok());
  const LoadAuthRequest init = c.init("F-1", 700, load_terminal);
  auto auth = recharge().authorize_load("terminal:desk", init);
  ASSERT_TRUE(auth.is_ok());
  const auto postings = posting_count();
  protocol::Mac4 forged{1, 2, 3, 4};
  auto done = recharge().confirm_load("terminal:desk", "F-1", forged);
  ASSERT_FALSE(done.is_ok());
  EXPECT_EQ(done.status().code(), Errc::kBadMac);
  EXPECT_EQ(recharge().order("F-1")->state, OrderState::kAuthorized);
  EXPECT_EQ(posting_count(), postings);
  EXPECT_EQ(card(c.card).balance_fen, 100);
  EXPECT_EQ(*backend->risk().open_event_count(), 1) << "a forged TAC is a finding";
  // The genuine TAC still confirms it.
  auto tac = c.credit(init, *auth);
  ASSERT_TRUE(tac.is_ok());
  EXPECT_TRUE(recharge().confirm_load("terminal:desk", "F-1", *tac).is_ok());
  EXPECT_EQ(card(c.card).balance_fen, 800);
  // And once confirmed, another TAC is a conflict.
  EXPECT_EQ(recharge().confirm_load("terminal:desk", "F-1", forged).status().code(),
            Errc::kConflict);
}

TEST_F(RechargeTest, ALoadTheCardNeverTookBecomesAPendingLoadCollectedLater) {
  PurseCard c = issue_card(0);
  ASSERT_TRUE(recharge().create_order(fin1, counter("P-1", c, 1'000)).is_ok());
  // MAC2 issued, but the card was pulled away before CREDIT FOR LOAD.
  auto auth = recharge().authorize_load("terminal:desk", c.init("P-1", 1'000, load_terminal));
  ASSERT_TRUE(auth.is_ok());
  EXPECT_EQ(*recharge().pending_sum_fen(), 1'000);
  // Next day the card comes back (补登); its online counter has not moved, so the first
  // authorization never credited: a new one is issued for the same order.
  next_day();
  auto pending = recharge().pending_loads(c.serial());
  ASSERT_TRUE(pending.is_ok());
  EXPECT_TRUE(pending->empty()) << "in doubt, not pending, until the card answers";
  auto done = load(c, "P-1", 1'000);
  ASSERT_TRUE(done.is_ok()) << done.status().to_string();
  EXPECT_EQ(card(c.card).balance_fen, 1'000);
  EXPECT_EQ(c.online_counter, 1);
  EXPECT_EQ(*backend->risk().open_event_count(), 0);
}

TEST_F(RechargeTest, ACreditWhoseTacWasLostIsRecognisedByTheOnlineCounter) {
  PurseCard c = issue_card(0);
  ASSERT_TRUE(recharge().create_order(fin1, counter("L-1", c, 300)).is_ok());
  ASSERT_TRUE(recharge().create_order(fin1, counter("L-2", c, 400)).is_ok());
  const LoadAuthRequest init = c.init("L-1", 300, load_terminal);
  auto auth = recharge().authorize_load("terminal:desk", init);
  ASSERT_TRUE(auth.is_ok());
  ASSERT_TRUE(c.credit(init, *auth).is_ok());  // credited; the TAC never reached us
  // The next load shows the counter moved past the authorization: L-1 happened.
  auto done = load(c, "L-2", 400);
  ASSERT_TRUE(done.is_ok()) << done.status().to_string();
  EXPECT_EQ(recharge().order("L-1")->state, OrderState::kLoaded);
  EXPECT_FALSE(recharge().order("L-1")->tac_verified);
  EXPECT_EQ(card(c.card).balance_fen, 700);
  EXPECT_EQ(c.card.balance_fen, 700);
}

TEST_F(RechargeTest, AnAbortedCounterLoadIsReversedAndAPhoneOrderStaysPending) {
  PurseCard c = issue_card(0, 0, true);
  const std::int64_t cash = ledger(account::kIssuerCash);
  ASSERT_TRUE(recharge().create_order(fin1, counter("A-1", c, 900)).is_ok());
  ASSERT_TRUE(
      recharge().authorize_load("terminal:desk", c.init("A-1", 900, load_terminal)).is_ok());
  auto aborted = recharge().abort_load("terminal:desk", "A-1", "card answered 9302");
  ASSERT_TRUE(aborted.is_ok()) << aborted.status().to_string();
  EXPECT_EQ(aborted->state, OrderState::kReversed);
  EXPECT_EQ(ledger(account::kIssuerCash), cash) << "the cash went back to the customer";
  EXPECT_EQ(ledger(account::kPendingLoads), 0);
  // A reversed order cannot be loaded any more.
  EXPECT_EQ(load(c, "A-1", 900).status().code(), Errc::kRejected);

  // A phone order over the air: paid through the bank, the card refuses the credit; the
  // money stays a pending load the phone collects later (补登).
  OrderRequest phone = counter("PH-1", c, 1'200);
  phone.channel = Channel::kPhone;
  ASSERT_TRUE(recharge().create_customer_order("phone-app", phone).is_ok());
  advance_s(5);
  ASSERT_TRUE(backend->poll().is_ok());
  ASSERT_EQ(recharge().order("PH-1")->state, OrderState::kPaid);
  ASSERT_TRUE(
      recharge().authorize_load("terminal:phone", c.init("PH-1", 1'200, load_terminal)).is_ok());
  auto kept = recharge().abort_load("terminal:phone", "PH-1", "card removed");
  ASSERT_TRUE(kept.is_ok());
  EXPECT_EQ(kept->state, OrderState::kPaid);
  auto pending = recharge().pending_loads(c.serial());
  ASSERT_TRUE(pending.is_ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].order_id, "PH-1");
  ASSERT_TRUE(load(c, "PH-1", 1'200).is_ok());
  EXPECT_EQ(card(c.card).balance_fen, 1'200);
}

TEST_F(RechargeTest, AnAbortThatWasWrongIsFoundByTheCardsCounterAndCannotBeRefundedMeanwhile) {
  PurseCard c = issue_card(0);
  OrderRequest phone = counter("AB-1", c, 600);
  phone.channel = Channel::kPhone;
  ASSERT_TRUE(recharge().create_customer_order("phone-app", phone).is_ok());
  advance_s(5);
  ASSERT_TRUE(backend->poll().is_ok());
  const LoadAuthRequest init = c.init("AB-1", 600, load_terminal);
  auto auth = recharge().authorize_load("terminal:phone", init);
  ASSERT_TRUE(auth.is_ok());
  ASSERT_TRUE(c.credit(init, *auth).is_ok());  // the card took it; the phone lost the answer
  ASSERT_TRUE(recharge().abort_load("terminal:phone", "AB-1", "no answer").is_ok());
  EXPECT_EQ(recharge().order("AB-1")->state, OrderState::kPaid);
  auto refund = recharge().reverse(fin1, "AB-1", "customer asks");
  EXPECT_EQ(refund.status().code(), Errc::kRejected) << "it could be paid twice";
  // The card's next load shows its counter moved past the aborted authorization.
  ASSERT_TRUE(recharge().create_order(fin1, counter("AB-2", c, 100)).is_ok());
  ASSERT_TRUE(load(c, "AB-2", 100).is_ok());
  EXPECT_EQ(recharge().order("AB-1")->state, OrderState::kLoaded);
  EXPECT_EQ(card(c.card).balance_fen, 700);
  EXPECT_EQ(c.card.balance_fen, 700);
  auto findings = backend->risk().events(admin, {RiskEventState::kOpen, "", 10});
  ASSERT_TRUE(findings.is_ok());
  ASSERT_EQ(findings->size(), 1u);
  EXPECT_NE((*findings)[0].detail.find("reported aborted"), std::string::npos);
}

TEST_F(RechargeTest, ReversalRefundsOnlyPaidUnloadedOrdersToTheirSource) {
  PurseCard c = issue_card(0);
  ASSERT_TRUE(recharge().create_order(fin1, counter("R-1", c, 250)).is_ok());
  auto r = recharge().reverse(fin2, "R-1", "customer changed mind");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->state, OrderState::kReversed);
  EXPECT_EQ(recharge().reverse(fin2, "R-1", "again").status().code(), Errc::kRejected);
  counter_load(c, "R-2", 300);
  EXPECT_EQ(recharge().reverse(fin2, "R-2", "too late").status().code(), Errc::kRejected);
  EXPECT_EQ(card(c.card).balance_fen, 300);
}

TEST_F(RechargeTest, LoadsAreRefusedForLostCardsAndOverTheBalanceLimit) {
  PurseCard named = issue_card(0, 0, true);
  ASSERT_TRUE(recharge().create_order(fin1, counter("X-1", named, 500)).is_ok());
  ASSERT_TRUE(backend->cards().report_lost(fin1, named.serial()).is_ok());
  EXPECT_EQ(recharge().authorize_load("t", named.init("X-1", 500, load_terminal)).status().code(),
            Errc::kRejected);
  EXPECT_EQ(recharge().create_order(fin1, counter("X-2", named, 500)).status().code(),
            Errc::kRejected);
  PurseCard full = issue_card(99'000);
  auto over = recharge().create_order(fin1, counter("X-3", full, 2'000));
  EXPECT_EQ(over.status().code(), Errc::kRejected) << over.status().to_string();
}

TEST_F(RechargeTest, MerchantPosRechargesUseTheQuotaUntilItIsExhausted) {
  MerchantParams shop = merchant("shop");
  shop.recharge_enabled = true;
  add_merchant(shop);
  const Session clerk = add_user("clerk", Role::kMerchantOperator, "shop");
  PurseCard c = issue_card(0);
  OrderRequest r = counter("Q-1", c, 3'000);
  r.channel = Channel::kMerchantPos;
  r.merchant_id = "shop";
  EXPECT_EQ(recharge().create_order(clerk, r).status().code(), Errc::kInsufficientFunds)
      << "no quota yet";
  // Only finance tops quota up; the clerk cannot.
  EXPECT_EQ(backend->merchants().top_up_quota(clerk, "shop", 5'000).code(),
            Errc::kPermissionDenied);
  ASSERT_TRUE(backend->merchants().top_up_quota(fin1, "shop", 5'000).is_ok());
  EXPECT_EQ(ledger(account::kRechargeQuota), -5'000);
  ASSERT_TRUE(recharge().create_order(clerk, r).is_ok());
  EXPECT_EQ(ledger(account::kRechargeQuota), -2'000);
  r.order_id = "Q-2";
  const auto postings = posting_count();
  auto exhausted = recharge().create_order(clerk, r);
  EXPECT_EQ(exhausted.status().code(), Errc::kInsufficientFunds) << exhausted.status().to_string();
  EXPECT_EQ(posting_count(), postings);
  EXPECT_EQ(backend->merchants().get(admin, "shop")->quota_fen, 2'000);
  // Another merchant's user cannot sell from this quota.
  MerchantParams other = merchant("other");
  other.recharge_enabled = true;
  add_merchant(other);
  const Session stranger = add_user("stranger", Role::kMerchantOperator, "other");
  r.order_id = "Q-3";
  r.amount_fen = 100;
  EXPECT_EQ(recharge().create_order(stranger, r).status().code(), Errc::kPermissionDenied);
  // A reversed POS order gives the quota back.
  ASSERT_TRUE(recharge().reverse(clerk, "Q-1", "printer jam").is_ok());
  EXPECT_EQ(backend->merchants().get(admin, "shop")->quota_fen, 5'000);
}

TEST_F(RechargeTest, VouchersAreRedeemedOnceAndTheTelecomPaysForThem) {
  ASSERT_TRUE(recharge()
                  .import_vouchers(fin1, "telecom", {{"VC-0001", 5'000}, {"VC-0002", 10'000}})
                  .is_ok());
  PurseCard c = issue_card(0);
  OrderRequest r = counter("V-1", c, 5'000);
  r.channel = Channel::kVoucher;
  r.voucher_code = "VC-0001";
  ASSERT_TRUE(recharge().create_customer_order("web", r).is_ok());
  EXPECT_EQ(ledger(account::kVoucherReceivable), 5'000);
  r.order_id = "V-2";
  EXPECT_EQ(recharge().create_customer_order("web", r).status().code(), Errc::kRejected)
      << "a used voucher";
  r.voucher_code = "VC-0002";  // worth 100 yuan, not 50
  EXPECT_EQ(recharge().create_customer_order("web", r).status().code(), Errc::kRejected);
  ASSERT_TRUE(load(c, "V-1", 5'000).is_ok());
  auto paid = recharge().settle_vouchers(fin1, "telecom");
  ASSERT_TRUE(paid.is_ok());
  EXPECT_EQ(*paid, 5'000);
  EXPECT_EQ(ledger(account::kVoucherReceivable), 0);
}

TEST_F(RechargeTest, OnlineAccountsAreToppedUpByTheBankAndPayForLoads) {
  PurseCard c = issue_card(0, 0, true);
  OrderRequest top = counter("B-1", c, 20'000);
  top.channel = Channel::kBank;
  top.to_account = true;
  ASSERT_TRUE(recharge().create_customer_order("web", top).is_ok());
  advance_s(5);
  ASSERT_TRUE(backend->poll().is_ok());
  EXPECT_EQ(recharge().order("B-1")->state, OrderState::kLoaded);
  EXPECT_EQ(ledger(account::kOnlineAccounts), -20'000);
  OrderRequest pay = counter("OA-1", c, 8'000);
  pay.channel = Channel::kOnlineAccount;
  ASSERT_TRUE(recharge().create_customer_order("app", pay).is_ok());
  EXPECT_EQ(ledger(account::kOnlineAccounts), -12'000);
  ASSERT_TRUE(load(c, "OA-1", 8'000).is_ok());
  pay.order_id = "OA-2";
  pay.amount_fen = 50'000;
  EXPECT_EQ(recharge().create_customer_order("app", pay).status().code(), Errc::kInsufficientFunds);
  // Anonymous cards have no account.
  PurseCard anon = issue_card(0);
  pay.card = anon.serial();
  pay.order_id = "OA-3";
  pay.amount_fen = 100;
  EXPECT_EQ(recharge().create_customer_order("app", pay).status().code(), Errc::kRejected);
}

class BankTest : public RechargeTest {
 protected:
  OrderRequest bank_order(const std::string& id, const PurseCard& c, std::int64_t amount) {
    OrderRequest r = counter(id, c, amount);
    r.channel = Channel::kBank;
    return r;
  }
};

TEST_F(BankTest, CallbacksComeLateOutOfOrderAndTwiceAndChangeThingsOnce) {
  options.money.bank.duplicate_callback_probability = 1.0;  // every callback twice
  options.money.bank.latency_us_min = 100'000;
  options.money.bank.latency_us_max = 5'000'000;
  fresh();
  PurseCard c = issue_card(0);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(recharge()
                    .create_customer_order("web", bank_order("BK-" + std::to_string(i), c, 100 + i))
                    .is_ok());
  }
  EXPECT_EQ(ledger(account::kPendingLoads), 0) << "nothing is ours before the bank says so";
  std::int64_t applied = 0, ignored = 0;
  for (int step = 0; step < 20; ++step) {
    advance_s(1);
    auto p = backend->poll();
    ASSERT_TRUE(p.is_ok()) << p.status().to_string();
    applied += p->callbacks;
    ignored += p->callbacks_ignored;
  }
  EXPECT_EQ(applied, 10);
  EXPECT_EQ(ignored, 10) << "the second of each pair is a duplicate";
  std::int64_t expected = 0;
  for (int i = 0; i < 10; ++i) expected += 100 + i;
  EXPECT_EQ(ledger(account::kPendingLoads), -expected);
  EXPECT_EQ(*backend->risk().open_event_count(), 0) << "duplicates are not findings";
}

TEST_F(BankTest, DeclinesFailTheOrderAndAContradictingCallbackIsRecordedNotApplied) {
  PurseCard c = issue_card(0);
  ASSERT_TRUE(recharge().create_customer_order("web", bank_order("D-1", c, 600)).is_ok());
  // A crafted callback ahead of the bank's own: declined.
  ASSERT_TRUE(
      recharge().on_bank_callback({"D-1", "B1", BankResult::kDeclined, 600, "no funds"}).is_ok());
  EXPECT_EQ(recharge().order("D-1")->state, OrderState::kFailed);
  const auto postings = posting_count();
  // Then an approval for the same order: contradicts what was decided.
  EXPECT_EQ(recharge().on_bank_callback({"D-1", "B1", BankResult::kApproved, 600, ""}).code(),
            Errc::kConflict);
  EXPECT_EQ(recharge().order("D-1")->state, OrderState::kFailed);
  EXPECT_EQ(posting_count(), postings);
  // A callback for an order we never made, and one with the wrong amount.
  EXPECT_EQ(recharge().on_bank_callback({"NOPE", "B2", BankResult::kApproved, 1, ""}).code(),
            Errc::kNotFound);
  ASSERT_TRUE(recharge().create_customer_order("web", bank_order("D-2", c, 700)).is_ok());
  EXPECT_EQ(recharge().on_bank_callback({"D-2", "B3", BankResult::kApproved, 7'000, ""}).code(),
            Errc::kRejected);
  EXPECT_EQ(recharge().order("D-2")->state, OrderState::kCreated);
  EXPECT_EQ(*backend->risk().open_event_count(), 3);
  auto count = backend->store().query("SELECT count(*) FROM bank_callbacks");
  ASSERT_TRUE(*count.step());
  EXPECT_EQ(count.column_int64(0), 4);
}

TEST_F(BankTest, ALostCallbackIsFoundByQueryingAfterTheTimeout) {
  options.money.bank.lost_callback_probability = 1.0;
  options.money.recharge.bank_timeout_us = 30'000'000;
  fresh();
  PurseCard c = issue_card(0);
  ASSERT_TRUE(recharge().create_customer_order("web", bank_order("T-1", c, 800)).is_ok());
  advance_s(10);
  ASSERT_TRUE(backend->poll().is_ok());
  EXPECT_EQ(recharge().order("T-1")->state, OrderState::kCreated) << "still within the timeout";
  advance_s(25);
  auto p = backend->poll();
  ASSERT_TRUE(p.is_ok());
  EXPECT_EQ(p->queried, 1);
  EXPECT_EQ(recharge().order("T-1")->state, OrderState::kPaid);
  ASSERT_TRUE(load(c, "T-1", 800).is_ok());
}

TEST_F(BankTest, ABankThatNeverDecidesIsGivenUpOnAndALateApprovalIsRefunded) {
  options.money.bank.latency_us_min = 3'600'000'000LL;  // an hour
  options.money.bank.latency_us_max = 3'600'000'000LL;
  options.money.recharge.bank_timeout_us = 60'000'000;
  options.money.recharge.bank_queries_max = 3;
  fresh();
  PurseCard c = issue_card(0);
  ASSERT_TRUE(recharge().create_customer_order("web", bank_order("G-1", c, 900)).is_ok());
  for (int i = 0; i < 4; ++i) {
    advance_s(61);
    ASSERT_TRUE(backend->poll().is_ok());
  }
  EXPECT_EQ(recharge().order("G-1")->state, OrderState::kFailed);
  // The bank approves after all: we refund it rather than take money for a failed order.
  advance_s(3'600);
  ASSERT_TRUE(backend->poll().is_ok());
  EXPECT_EQ(recharge().order("G-1")->state, OrderState::kFailed);
  EXPECT_EQ(ledger(account::kPendingLoads), 0);
  const auto lines = backend->bank().statement(backend->calendar().today_yyyymmdd());
  int in = 0, out = 0;
  for (const StatementLine& l : lines) {
    if (l.reference != "G-1") continue;
    in += l.kind == StatementKind::kPaymentIn;
    out += l.kind == StatementKind::kRefundOut;
  }
  EXPECT_EQ(in, 1);
  EXPECT_EQ(out, 1);
}

TEST_F(BankTest, TheSameSeedGivesTheSameOutcomes) {
  auto run = [&](std::uint64_t seed) {
    options.money.bank.seed = seed;
    options.money.bank.decline_probability = 0.4;
    fresh();
    PurseCard c = issue_card(0);
    std::string outcome;
    for (int i = 0; i < 20; ++i) {
      EXPECT_TRUE(recharge()
                      .create_customer_order("web", bank_order("S-" + std::to_string(i), c, 10))
                      .is_ok());
    }
    advance_s(10);
    EXPECT_TRUE(backend->poll().is_ok());
    for (int i = 0; i < 20; ++i) {
      outcome += order_state_name(recharge().order("S-" + std::to_string(i))->state)[0];
    }
    return outcome;
  };
  const std::string a = run(7), b = run(7), c = run(8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a.find('f'), std::string::npos) << a;
  EXPECT_NE(a.find('p'), std::string::npos) << a;
}

TEST_F(RechargeTest, ARebateOf200YuanComesBackOver5Months) {
  options.money.recharge.max_balance_fen = 200'000;
  options.money.recharge.max_order_fen = 200'000;
  fresh();
  RebateRule rule;
  rule.name = "1000 get 200";
  rule.min_recharge_fen = 100'000;
  rule.rebate_fen = 20'000;
  rule.installments = 5;
  rule.interval_months = 1;
  EXPECT_EQ(recharge().add_rebate_rule(fin1, rule).status().code(), Errc::kPermissionDenied);
  ASSERT_TRUE(recharge().add_rebate_rule(admin, rule).is_ok());
  PurseCard c = issue_card(0);
  counter_load(c, "RB-1", 100'000);
  EXPECT_EQ(ledger(account::kRebatesOwed), -20'000);
  EXPECT_EQ(ledger(account::kMarketingExpense), 20'000);
  // A smaller recharge earns nothing.
  PurseCard small = issue_card(0);
  counter_load(small, "RB-2", 99'999);
  EXPECT_EQ(ledger(account::kRebatesOwed), -20'000);

  std::int64_t released = 0;
  std::vector<int> days;
  for (int day = 1; day <= 160; ++day) {
    next_day();
    auto p = backend->poll();
    ASSERT_TRUE(p.is_ok()) << p.status().to_string();
    released += p->rebates_released;
    auto pending = recharge().pending_loads(c.serial());
    ASSERT_TRUE(pending.is_ok());
    for (const Order& o : *pending) {
      EXPECT_EQ(o.channel, Channel::kRebate);
      EXPECT_EQ(o.amount_fen, 4'000);
      days.push_back(day);
      auto done = load(c, o.order_id, o.amount_fen);
      ASSERT_TRUE(done.is_ok()) << done.status().to_string();
    }
  }
  EXPECT_EQ(released, 5);
  // 2024-01-01 + 1..5 months: Feb 1, Mar 1, Apr 1, May 1, Jun 1.
  EXPECT_EQ(days, (std::vector<int>{31, 60, 91, 121, 152}));
  EXPECT_EQ(ledger(account::kRebatesOwed), 0);
  EXPECT_EQ(card(c.card).balance_fen, 120'000);
  EXPECT_EQ(*recharge().rebates_given_sum_fen(), 20'000);
  EXPECT_EQ(ledger(account::kMarketingExpense), 20'000);
}

}  // namespace
}  // namespace citycard::backend
