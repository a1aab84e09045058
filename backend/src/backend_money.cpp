// The Backend's money side: constructing its components over the store, its conservation
// checks, and its scheduler step. Kept apart from backend.cpp so that the two sides of the
// backend change in different files.
#include <string_view>

#include "citycard/backend/backend.h"
#include "citycard/backend/money.h"
#include "citycard/sim/rng.h"

namespace citycard::backend {

Status Backend::open_money() {
  MoneyOptions& o = options_.money;
  Store& store = *store_;
  {
    auto txn = store.begin();
    if (!txn.is_ok()) return txn.status();
    for (std::string_view name :
         {account::kPendingLoads, account::kOnlineAccounts, account::kRechargeQuota,
          account::kVoucherReceivable, account::kBankClearing, account::kRebatesOwed,
          account::kMarketingExpense, account::kCommissionExpense, account::kPointsLiability,
          account::kPointsReceivable, account::kPointsPrepaid, account::kPointsRedeemedDue}) {
      if (Status s = ledger_->open_account(name); !s.is_ok()) return s;
    }
    if (Status s = txn->commit(); !s.is_ok()) return s;
  }

  if (o.bank_gateway != nullptr) {
    bank_ = o.bank_gateway;
  } else {
    SimBankOptions bank = o.bank;
    // A fork of the run's seed, so that the bank's stream is its own.
    if (bank.seed == 0) bank.seed = sim::Rng(options_.key_seed).fork("bank").seed();
    auto sim = std::make_unique<SimBank>(calendar_, bank);
    sim_bank_ = sim.get();
    owned_bank_ = std::move(sim);
    bank_ = owned_bank_.get();
  }
  if (!o.notification_file.empty()) {
    notify_gateway_ = std::make_unique<FileNotificationGateway>(o.notification_file);
  } else if (store.path() == ":memory:" || store.path().empty()) {
    notify_gateway_ = std::make_unique<MemoryNotificationGateway>();
  } else {
    notify_gateway_ =
        std::make_unique<FileNotificationGateway>(store.path() + ".notifications.log");
  }

  CardOptions card_options = o.cards;
  card_options.id_salt = options_.key_seed;
  users_ = std::make_unique<Users>(store, calendar_, o.users);
  notifier_ = std::make_unique<Notifier>(store, calendar_, *users_, *notify_gateway_, o.notify);
  risk_ = std::make_unique<Risk>(store, calendar_, *users_, o.risk);
  if (Status s = risk_->open(); !s.is_ok()) return s;
  merchants_ =
      std::make_unique<Merchants>(store, *ledger_, *issuance_, *users_, calendar_, o.merchants);
  if (Status s = merchants_->open(); !s.is_ok()) return s;
  notifier_->set_merchants(merchants_.get());
  cards_ = std::make_unique<Cards>(store, *ledger_, *issuance_, *risk_, *notifier_, *users_,
                                   calendar_, card_options);
  risk_->set_block_card([this](const protocol::Serial8& card, const std::string& reason) {
    return cards_->block(card, reason);
  });
  fares_ = std::make_unique<Fares>(store, calendar_, *users_, o.fares);
  recharge_ =
      std::make_unique<Recharge>(store, *ledger_, *keys_, *issuance_, *cards_, *merchants_, *risk_,
                                 *notifier_, *users_, *bank_, calendar_, o.recharge);
  settlement_ = std::make_unique<Settlement>(store, *ledger_, *merchants_, *users_, *bank_,
                                             calendar_, o.settlement);
  reports_ = std::make_unique<ReportData>(store, calendar_, *users_, *clearing_);
  swipe_rules_ = std::make_unique<SwipeRules>(*risk_, *merchants_, *notifier_);
  ingest_->set_swipe_hook(swipe_rules_.get());
  money_service_ =
      std::make_unique<MoneyService>(*recharge_, *risk_, *fares_, *issuance_, *merchants_);
  service_->set_money(money_service_.get());
  sign_on_service_ = std::make_unique<SignOnService>(*issuance_, *risk_, *fares_, calendar_);
  service_->set_sign_on(sign_on_service_.get());
  desk_service_ = std::make_unique<DeskService>(store, *users_, *cards_, *issuance_, *merchants_,
                                                calendar_, options_.key_seed);
  if (Status s = desk_service_->open(); !s.is_ok()) return s;
  service_->set_desk(desk_service_.get());
  qr_service_ =
      std::make_unique<QrService>(store, *ledger_, *cards_, *issuance_, calendar_, options_.qr);
  if (Status s = qr_service_->open(); !s.is_ok()) return s;
  service_->set_qr(qr_service_.get());
  pos_refund_service_ =
      std::make_unique<PosRefundService>(store, *ledger_, *cards_, *issuance_, *users_, calendar_);
  service_->set_pos_refund(pos_refund_service_.get());
  return Status::ok();
}

namespace {

// `account` must hold -owed (a liability) or +owed (an asset).
Status expect(const Ledger& ledger, std::string_view account, std::int64_t expected,
              const char* what) {
  auto b = ledger.balance(account);
  if (!b.is_ok()) return b.status();
  if (*b != expected) {
    return Status(Errc::kInternal, std::string(account) + " is " + std::to_string(*b) +
                                       " fen but " + what + " say " + std::to_string(expected) +
                                       " (difference " + std::to_string(*b - expected) + ")");
  }
  return Status::ok();
}

}  // namespace

Status Backend::check_money_conservation() const {
  const Ledger& l = *ledger_;
  auto pending = recharge_->pending_sum_fen();
  auto accounts = cards_->account_sum_fen();
  auto quota = merchants_->quota_sum_fen();
  auto vouchers = recharge_->voucher_receivable_sum_fen();
  auto owed = recharge_->rebates_owed_sum_fen();
  auto given = recharge_->rebates_given_sum_fen();
  auto points = merchants_->points_sum();
  auto stock = merchants_->points_stock_sum();
  auto clearing = settlement_->bank_clearing_sum_fen();
  auto charged = settlement_->points_cost_charged_fen();
  auto redeemed_paid = settlement_->points_redeemed_paid_fen();
  auto fees = settlement_->fee_income_fen();
  auto commission = settlement_->commission_fen();
  for (const Status& s :
       {pending.status(), accounts.status(), quota.status(), vouchers.status(), owed.status(),
        given.status(), points.status(), stock.status(), clearing.status(), charged.status(),
        redeemed_paid.status(), fees.status(), commission.status()}) {
    if (!s.is_ok()) return s;
  }
  // Points awarded post-paid and redeemed for gifts, from their moves.
  std::int64_t postpaid_points = 0, gift_points = 0;
  {
    auto q = store_->query(
        "SELECT coalesce(sum(CASE WHEN kind = 0 THEN points - prepaid_points END), 0), "
        "coalesce(sum(CASE WHEN kind = 1 THEN points END), 0) FROM points_moves");
    auto row = q.step();
    if (!row.is_ok()) return row.status();
    postpaid_points = q.column_int64(0);
    gift_points = q.column_int64(1);
  }
  struct Check {
    std::string_view account;
    std::int64_t expected;
    const char* what;
  };
  const Check checks[] = {
      {account::kPendingLoads, -*pending, "paid, unloaded orders"},
      {account::kOnlineAccounts, -*accounts, "online accounts"},
      {account::kRechargeQuota, -*quota, "merchants' quotas"},
      {account::kVoucherReceivable, *vouchers, "redeemed, unsettled vouchers"},
      {account::kRebatesOwed, -*owed, "unreleased rebate instalments"},
      {account::kMarketingExpense, *given, "rebates granted"},
      {account::kPointsLiability, -*points * kPointValueFen, "cards' points"},
      {account::kPointsPrepaid, -*stock * kPointValueFen, "merchants' prepaid points"},
      {account::kPointsReceivable, postpaid_points * kPointValueFen - *charged,
       "post-paid points not yet charged"},
      {account::kPointsRedeemedDue, -(gift_points * kPointValueFen - *redeemed_paid),
       "gift redemptions not yet paid"},
      {account::kBankClearing, -*clearing, "approved payouts not confirmed by the bank"},
      {account::kFeeIncome, -*fees, "approved settlement fees"},
      {account::kCommissionExpense, *commission, "approved recharge commissions"},
  };
  for (const Check& c : checks) {
    if (Status s = expect(l, c.account, c.expected, c.what); !s.is_ok()) return s;
  }
  // Each operator's QR payments not yet settled (qr.h, settlement.h).
  auto qr_payables = l.balances(account::kQrPayablePrefix);
  if (!qr_payables.is_ok()) return qr_payables.status();
  for (const AccountBalance& a : *qr_payables) {
    auto due = qr_service_->payable_fen(a.account.substr(account::kQrPayablePrefix.size()));
    if (!due.is_ok()) return due.status();
    if (Status s = expect(l, a.account, -*due, "QR payments less approved settlements");
        !s.is_ok()) {
      return s;
    }
  }
  auto deployers = settlement_->deployer_owed();
  if (!deployers.is_ok()) return deployers.status();
  auto payables = l.balances(account::kDeployerPayablePrefix);
  if (!payables.is_ok()) return payables.status();
  for (const AccountBalance& a : *payables) {
    const std::string id = a.account.substr(account::kDeployerPayablePrefix.size());
    const auto it = deployers->find(id);
    const std::int64_t due = it == deployers->end() ? 0 : it->second;
    if (Status s = expect(l, a.account, -due, "approved deployer shares less payouts");
        !s.is_ok()) {
      return s;
    }
  }
  return Status::ok();
}

Result<RechargePoll> Backend::poll() {
  auto r = recharge_->poll();
  if (!r.is_ok()) return r.status();
  if (Status s = risk_->poll(); !s.is_ok()) return s;
  if (ingest_->options().reorder_window_us > 0) {
    auto gaps = ingest_->flag_persistent_gaps();
    if (!gaps.is_ok()) return gaps.status();
  }
  auto expiring = notifier_->check_expiry();
  if (!expiring.is_ok()) return expiring.status();
  auto sent = notifier_->flush();
  if (!sent.is_ok()) return sent.status();
  return r;
}

}  // namespace citycard::backend
