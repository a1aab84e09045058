// Clearing (清分): what each operator (merchant) earned, by route, vehicle, driver and device,
// from the swipes table, over a range of settlement dates. Settlement (settlement.h) pays
// operators; an operator's all-time swipes minus what approved settlements took out of its
// payable equals what the ledger says is still payable to it, and reconcile_with_ledger()
// checks exactly that.
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

// A finer cut of one operator's takings (transit figures by route, vehicle, driver; a
// merchant's by device).
enum class ClearingDimension : std::uint8_t { kRoute = 0, kVehicle = 1, kDriver = 2, kDevice = 3 };

struct DimensionTotal {
  std::string operator_id;
  std::string key;  // the route, vehicle, driver or device
  std::int64_t count = 0;
  std::int64_t amount_fen = 0;
  std::int64_t full_fare_fen = 0;  // before discounts: full - amount is what riders saved
  std::int64_t transfers = 0;      // rides that carried a transfer count
  bool operator==(const DimensionTotal&) const = default;
};

class Clearing {
 public:
  Clearing(Store& store, const Ledger& ledger) : store_(store), ledger_(ledger) {}

  // By operator id; by (operator id, route).
  Result<std::vector<OperatorTotal>> by_operator(const DateRange& range = {}) const;
  Result<std::vector<RouteTotal>> by_route(const DateRange& range = {}) const;
  // By (operator id, key), for one dimension; `operator_id` empty: every operator.
  Result<std::vector<DimensionTotal>> by(ClearingDimension dimension, const DateRange& range = {},
                                         const std::string& operator_id = "") const;

  // Every payable:<operator> account's balance is minus (that operator's all-time swipe total
  // minus the gross of its approved settlement lines), and zero for an operator without
  // swipes. Names the first operator that differs.
  Status reconcile_with_ledger() const;

 private:
  Store& store_;
  const Ledger& ledger_;
};

}  // namespace citycard::backend
