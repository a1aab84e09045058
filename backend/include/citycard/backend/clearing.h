// Clearing (清分), first cut: what each operator and each route earned, from the swipes
// table, over a range of settlement dates. Settlement (paying operators) comes later; until
// then an operator's all-time total equals what the ledger says is payable to it, and
// reconcile_with_ledger() checks exactly that.
//
// Threads: one caller at a time (the Backend's).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "citycard/backend/ledger.h"
#include "citycard/backend/store.h"
#include "citycard/protocol/status.h"

namespace citycard::backend {

// Inclusive settlement dates as YYYYMMDD; an absent end is open.
struct DateRange {
  std::optional<int> from_yyyymmdd;
  std::optional<int> to_yyyymmdd;
};

struct OperatorTotal {
  std::string operator_id;
  std::int64_t count = 0;
  std::int64_t amount_fen = 0;
  bool operator==(const OperatorTotal&) const = default;
};

struct RouteTotal {
  std::string operator_id;
  std::string route;
  std::int64_t count = 0;
  std::int64_t amount_fen = 0;
  bool operator==(const RouteTotal&) const = default;
};

class Clearing {
 public:
  Clearing(Store& store, const Ledger& ledger) : store_(store), ledger_(ledger) {}

  // By operator id; by (operator id, route).
  Result<std::vector<OperatorTotal>> by_operator(const DateRange& range = {}) const;
  Result<std::vector<RouteTotal>> by_route(const DateRange& range = {}) const;

  // Every payable:<operator> account's balance is minus that operator's all-time swipe total
  // (and zero for an operator without swipes). Names the first operator that differs.
  Status reconcile_with_ledger() const;

 private:
  Store& store_;
  const Ledger& ledger_;
};

}  // namespace citycard::backend
