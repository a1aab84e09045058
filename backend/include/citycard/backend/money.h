// Money conventions shared by the money side of the backend (recharge, cards, merchants,
// settlement, risk): the ledger accounts it adds, rate arithmetic and how amounts print.
//
// Rates are integers: basis points (1 bp = 1/10,000) for fees, discounts and shares. The
// rounding rule, everywhere: rate_of(amount, bp) = floor((amount * bp + 5,000) / 10,000) for
// amount >= 0, i.e. half a fen rounds up. A fee is computed once on a settlement line's total
// (never per swipe and then summed), and every derived figure is a difference of integers
// (net = gross - fee), so each posting balances exactly and nothing is lost to rounding.
//
// Sign convention of the accounts (ledger.h): liabilities carry negative balances.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "citycard/backend/ledger.h"

namespace citycard::backend {

namespace account {
// Money paid for a recharge that has not reached the card yet (补登 waits here), rebate
// instalments released, points redeemed into a card: owed to a card, not on it.
inline constexpr std::string_view kPendingLoads = "pending_loads";
// What named cards' online accounts (联机账户) hold.
inline constexpr std::string_view kOnlineAccounts = "online_accounts";
// Recharge quota merchants bought in advance and have not used (owed to merchants).
inline constexpr std::string_view kRechargeQuota = "recharge_quota";
// Telecom vouchers redeemed but not yet paid for by the telecom (an asset).
inline constexpr std::string_view kVoucherReceivable = "receivable:vouchers";
// Settlement payouts approved and sent to the bank, not yet confirmed paid by its statement.
inline constexpr std::string_view kBankClearing = "bank_clearing";
// Rebate instalments promised (recharge 1,000 yuan, get 200 back over 5 months), not yet
// released to the card.
inline constexpr std::string_view kRebatesOwed = "rebates_owed";
inline constexpr std::string_view kMarketingExpense = "expense:marketing";    // rebates given
inline constexpr std::string_view kCommissionExpense = "expense:commission";  // recharge fees
// Points are money: one point is worth kPointValueFen. Owed to cardholders:
inline constexpr std::string_view kPointsLiability = "points_liability";
// Post-paid points merchants awarded and will pay for at their next settlement (an asset):
inline constexpr std::string_view kPointsReceivable = "receivable:points";
// Points merchants bought in advance (积分预售) and have not awarded yet (owed to merchants):
inline constexpr std::string_view kPointsPrepaid = "points_prepaid";
// Points members redeemed for gifts at a merchant, to be paid to it at settlement:
inline constexpr std::string_view kPointsRedeemedDue = "points_redeemed_due";
// A terminal deployer's (终端布放商) share of fees, until paid out.
inline constexpr std::string_view kDeployerPayablePrefix = "deployer_payable:";
std::string deployer_payable(std::string_view deployer_id);
// An operator's QR payments (qr.h), until settled to it.
inline constexpr std::string_view kQrPayablePrefix = "qr_payable:";
std::string qr_payable(std::string_view operator_id);
}  // namespace account

inline constexpr std::int64_t kBasisPointsWhole = 10'000;
// The value of one loyalty point, in fen. Fixed: changing it would revalue every balance.
inline constexpr std::int64_t kPointValueFen = 1;

// round-half-up(amount_fen * rate_bp / 10,000); amount_fen >= 0 and 0 <= rate_bp <= 10,000.
std::int64_t rate_of(std::int64_t amount_fen, std::int64_t rate_bp);
// amount_fen minus its discount: amount - rate_of(amount, discount_bp).
std::int64_t after_discount(std::int64_t amount_fen, std::int64_t discount_bp);
// "1234.56", "-0.05": yuan with two decimals, from integer fen (no float anywhere).
std::string yuan(std::int64_t fen);

}  // namespace citycard::backend
