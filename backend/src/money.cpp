#include "citycard/backend/money.h"

#include <cstdio>

#include "citycard/protocol/check.h"

namespace citycard::backend {

std::string account::qr_payable(std::string_view operator_id) {
  return std::string(kQrPayablePrefix) + std::string(operator_id);
}

std::string account::deployer_payable(std::string_view deployer_id) {
  return std::string(kDeployerPayablePrefix) + std::string(deployer_id);
}

std::int64_t rate_of(std::int64_t amount_fen, std::int64_t rate_bp) {
  CITYCARD_CHECK(amount_fen >= 0 && rate_bp >= 0 && rate_bp <= kBasisPointsWhole,
                 "rate_of takes a non-negative amount and a rate of 0..10000 bp");
  // Split the amount so that no amount a ledger can hold overflows the product: with
  // amount = q * 10,000 + r, amount * bp / 10,000 = q * bp + r * bp / 10,000 exactly, and
  // r * bp < 10^8.
  const std::int64_t q = amount_fen / kBasisPointsWhole, r = amount_fen % kBasisPointsWhole;
  return q * rate_bp + (r * rate_bp + kBasisPointsWhole / 2) / kBasisPointsWhole;
}

std::int64_t after_discount(std::int64_t amount_fen, std::int64_t discount_bp) {
  return amount_fen - rate_of(amount_fen, discount_bp);
}

std::string yuan(std::int64_t fen) {
  const bool negative = fen < 0;
  // Negate as unsigned so that INT64_MIN prints too.
  const std::uint64_t magnitude =
      negative ? 0 - static_cast<std::uint64_t>(fen) : static_cast<std::uint64_t>(fen);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%llu.%02llu", negative ? "-" : "",
                static_cast<unsigned long long>(magnitude / 100),
                static_cast<unsigned long long>(magnitude % 100));
  return buf;
}

}  // namespace citycard::backend
