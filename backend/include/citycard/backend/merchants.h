// Merchants, terminal deployers, card levels and loyalty points (商户管理, 积分、折扣管理).
//
// A merchant is who a terminal's operator_id names: a shop, a bus company, a metro line, or the
// card company's own service desk. Its record carries what clearing and settlement need: kind,
// settlement cycle (daily, weekly, monthly), transaction fee rate, recharge fee rate (the
// commission we pay it for recharges it sells at its POS), bank account, the terminal deployer
// that shares its fees, its recharge quota and its points settings.
//
// Money: top_up_quota() takes the merchant's payment for quota: Dr cash:issuer / Cr
// recharge_quota; POS recharges use it up (recharge.cpp). buy_points() (积分预售) takes the
// payment for points in advance: Dr cash:issuer / Cr points_prepaid. A purchase at a merchant
// with a points coefficient earns the card
//   points = floor(amount_fen * coefficient_milli * level_pct / (100 * 1,000 * 100))
// (coefficient 1,000 = one point per yuan, level_pct 100 = no bonus); they come out of the
// merchant's prepaid stock while it lasts (Dr points_prepaid), the rest is post-paid: the
// merchant owes them (Dr receivable:points) until its next settlement deducts them; either way
// Cr points_liability. One point is worth kPointValueFen (money.h). A member redeeming points
// for a gift at a merchant: Dr points_liability / Cr points_redeemed_due, paid to the merchant
// at settlement. Card levels follow a card's total spending at points merchants.
//
// Merchant users (Users) see and touch only their own merchant; staff see all.
//
// Threads: one caller at a time (the Backend's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "citycard/backend/calendar.h"
#include "citycard/backend/issuance.h"
#include "citycard/backend/ledger.h"
#include "citycard/backend/store.h"
#include "citycard/backend/swipe_hook.h"
#include "citycard/backend/users.h"
#include "citycard/protocol/personalisation.h"
#include "citycard/protocol/status.h"

namespace citycard::backend {

enum class MerchantKind : std::uint8_t { kRetail = 0, kTransit = 1, kDesk = 2 };
enum class SettlementCycle : std::uint8_t { kDaily = 0, kWeekly = 1, kMonthly = 2 };
enum class PointsFunding : std::uint8_t { kPostpaid = 0, kPrepaid = 1 };
const char* merchant_kind_name(MerchantKind k);
const char* cycle_name(SettlementCycle c);

struct MerchantParams {
  std::string merchant_id;  // = the operator_id its terminals are registered with
  std::string name;
  MerchantKind kind = MerchantKind::kRetail;
  SettlementCycle cycle = SettlementCycle::kDaily;
  std::int64_t txn_fee_bp = 0;         // of the purchases it takes, kept as our fee
  std::int64_t recharge_fee_bp = 0;    // of the recharges it sells, paid to it as commission
  std::string deployer_id;             // empty: none
  std::int64_t deployer_share_bp = 0;  // of the fee, to the deployer
  std::string bank_name;
  std::string bank_account;
  std::string account_name;
  std::int64_t points_coefficient_milli = 0;  // 0: no points
  PointsFunding points_funding = PointsFunding::kPostpaid;
  bool recharge_enabled = false;  // its POS may sell recharges within its quota
  std::optional<int> start_date;  // first settlement day (YYYYMMDD); default: today
  bool operator==(const MerchantParams&) const = default;
};

struct MerchantRecord {
  MerchantParams params;
  std::int64_t quota_fen = 0;     // recharge quota left
  std::int64_t points_stock = 0;  // prepaid points not yet awarded
  int settled_through = 0;        // last day covered by an approved settlement (YYYYMMDD)
  bool active = true;
};

struct DeployerParams {
  std::string deployer_id;
  std::string name;
  std::string bank_name;
  std::string bank_account;
  std::string account_name;
};

struct CardLevel {
  int level = 0;
  std::string name;
  std::int64_t min_spend_fen = 0;
  std::int64_t points_pct = 100;  // points multiplier, percent
  bool operator==(const CardLevel&) const = default;
};

struct PointsBalance {
  std::int64_t points = 0;
  int level = 0;
  std::int64_t spend_fen = 0;
};

struct MerchantOptions {
  std::size_t merchants_max = 10'000;
  std::size_t levels_max = 16;
  std::size_t text_max_bytes = 64;
  std::int64_t quota_max_fen = 100'000'000;  // one million yuan per merchant
  std::int64_t points_per_purchase_max = 1'000'000;
};

class Merchants {
 public:
  Merchants(Store& store, Ledger& ledger, Issuance& issuance, Users& users,
            const Calendar& calendar, MerchantOptions options = {})
      : store_(store),
        ledger_(ledger),
        issuance_(issuance),
        users_(users),
        calendar_(calendar),
        options_(options) {}

  Status open();  // loads merchants and levels into memory

  // Admin. create() opens payable:<id>; kDuplicate for a taken id.
  Status create(const Session& by, const MerchantParams& params);
  // Admin: everything but the id and start date; takes effect for the next settlement.
  Status update(const Session& by, const MerchantParams& params);
  Status set_active(const Session& by, const std::string& merchant_id, bool active);
  Status create_deployer(const Session& by, const DeployerParams& params);
  Result<DeployerParams> deployer(const std::string& deployer_id) const;

  // Staff see any merchant; merchant users only their own.
  Result<MerchantRecord> get(const Session& by, const std::string& merchant_id) const;
  Result<std::vector<MerchantRecord>> list(const Session& by) const;
  // Internal (no session): the merchant's settings from memory, or null. Balances (quota,
  // points stock) and settled_through are not cached: get() reads them.
  const MerchantParams* find(const std::string& merchant_id) const;
  std::vector<std::string> ids() const;

  // Admin: a terminal for an existing merchant (its operator_id must name one).
  Result<protocol::PsamImage> register_terminal(const Session& by, const TerminalParams& params);
  Result<std::vector<TerminalRecord>> terminals(const Session& by,
                                                const std::string& merchant_id) const;
  Result<std::vector<UserRecord>> users_of(const Session& by, const std::string& merchant_id) const;

  // Finance or admin: the merchant paid `amount_fen` for recharge quota.
  Status top_up_quota(const Session& by, const std::string& merchant_id, std::int64_t amount_fen);
  // Internal, in the caller's transaction: kInsufficientFunds when the quota is exhausted.
  Status use_quota(const std::string& merchant_id, std::int64_t amount_fen);
  Status restore_quota(const std::string& merchant_id, std::int64_t amount_fen);
  Result<std::int64_t> quota_sum_fen() const;

  // Finance or admin: the merchant paid for `points` in advance.
  Status buy_points(const Session& by, const std::string& merchant_id, std::int64_t points);
  Result<std::int64_t> points_stock_sum() const;

  // Admin: replaces the level table (level 0 must start at 0 spend).
  Status set_card_levels(const Session& by, std::vector<CardLevel> levels);
  const std::vector<CardLevel>& card_levels() const { return levels_; }

  // The ingest hook: points for an accepted purchase.
  Status award_points(const SwipeFacts& swipe, std::int64_t swipe_id);
  // A member redeems points for a gift at `merchant_id` (its users or staff). Returns the
  // points left.
  Result<std::int64_t> redeem_for_gift(const Session& by, const std::string& merchant_id,
                                       const protocol::Serial8& card, std::int64_t points);
  // Internal, in the caller's transaction: takes points off a card (kInsufficientFunds when it
  // has fewer) and records the move; the caller posts the money.
  Status take_points(const protocol::Serial8& card, std::int64_t points, int move_kind,
                     const std::string& merchant_id, const std::string& ref);
  Result<PointsBalance> points(const protocol::Serial8& card) const;
  Result<std::int64_t> points_sum() const;

  // Kinds of rows in points_moves.
  static constexpr int kMoveAward = 0;
  static constexpr int kMoveGift = 1;
  static constexpr int kMoveLoad = 2;

 private:
  Status load();
  Result<MerchantRecord> read(const std::string& merchant_id) const;
  Status check_params(const MerchantParams& p) const;
  Status write(const MerchantParams& p, bool create);
  int level_for(std::int64_t spend_fen) const;

  Store& store_;
  Ledger& ledger_;
  Issuance& issuance_;
  Users& users_;
  const Calendar& calendar_;
  MerchantOptions options_;
  std::map<std::string, MerchantParams> cache_;  // mirror of merchants; reloaded after writes
  std::vector<CardLevel> levels_;                // by min spend
};

}  // namespace citycard::backend
