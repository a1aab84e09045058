// The figures the reports layer renders (报表管理): issuance statistics, merchant and terminal
// summaries by day or month, transaction counts by type, failure rates, transit figures by
// route, vehicle and driver. Plain structs from plain queries; nothing here formats.
//
// Dates: swipes by their settlement date; recharge orders by the day they were created;
// issuance by the day a card was issued (its issued_at_us on the run's calendar). Load attempts
// come from the audit log and are counted over all time. Rates are integers in parts per
// million (never a float).
//
// Roles: staff see everything; merchant users only their own merchant (merchant and terminal
// summaries, transit figures), and nothing else.
//
// Threads: one caller at a time (the Backend's).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "citycard/backend/calendar.h"
#include "citycard/backend/clearing.h"
#include "citycard/backend/store.h"
#include "citycard/backend/users.h"
#include "citycard/protocol/purse.h"
#include "citycard/protocol/status.h"

namespace citycard::backend {

enum class ReportPeriod : std::uint8_t { kDay = 0, kMonth = 1 };

struct IssuanceStats {
  std::int64_t cards = 0;
  std::int64_t named = 0;
  std::int64_t anonymous = 0;
  std::array<std::int64_t, 4> by_type{};  // adult, student, elder, staff
  std::map<std::string, std::int64_t> by_status;
  std::int64_t balance_fen = 0;  // believed, over all cards
  std::int64_t deposit_fen = 0;
  std::vector<std::pair<int, std::int64_t>> issued;  // (day or month, cards) in the range
};

struct MerchantSummary {
  std::string merchant_id;
  int period = 0;  // YYYYMMDD or YYYYMM
  std::int64_t purchases = 0;
  std::int64_t purchase_fen = 0;
  std::int64_t recharges = 0;  // POS recharges loaded
  std::int64_t recharge_fen = 0;
  bool operator==(const MerchantSummary&) const = default;
};

struct TerminalSummary {
  protocol::TerminalId terminal{};
  std::string merchant_id;
  int period = 0;
  std::int64_t purchases = 0;
  std::int64_t purchase_fen = 0;
  std::int64_t batches = 0;
  std::int64_t rejected = 0;
};

struct TransactionCounts {
  std::int64_t purchases = 0;
  std::int64_t purchase_fen = 0;
  std::int64_t suspicious = 0;
  std::int64_t rejected_records = 0;
  std::int64_t duplicate_records = 0;
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> recharges;  // channel: count, fen
  std::map<std::string, std::int64_t> orders_by_state;
  std::int64_t reversals = 0;
  std::map<std::string, std::int64_t> cards_by_status;  // refunds, replacements... (all time)
};

struct FailureRates {
  std::int64_t records = 0;  // uploaded swipe records
  std::int64_t records_refused = 0;
  std::int64_t refused_ppm = 0;
  std::map<std::string, std::int64_t> refused_by_code;
  std::int64_t load_attempts = 0;  // authorizations and confirmations asked
  std::int64_t load_failures = 0;
  std::int64_t load_failure_ppm = 0;
  std::int64_t orders = 0;
  std::int64_t orders_failed = 0;  // payments that never happened
  std::int64_t order_failure_ppm = 0;
};

class ReportData {
 public:
  ReportData(Store& store, const Calendar& calendar, Users& users, Clearing& clearing)
      : store_(store), calendar_(calendar), users_(users), clearing_(clearing) {}

  Result<IssuanceStats> issuance(const Session& by, const DateRange& range,
                                 ReportPeriod period) const;
  // `merchant_id` empty: every merchant (staff only).
  Result<std::vector<MerchantSummary>> merchants(const Session& by, const std::string& merchant_id,
                                                 const DateRange& range, ReportPeriod period) const;
  Result<std::vector<TerminalSummary>> terminals(const Session& by, const std::string& merchant_id,
                                                 const DateRange& range, ReportPeriod period) const;
  Result<TransactionCounts> transactions(const Session& by, const DateRange& range) const;
  Result<FailureRates> failures(const Session& by, const DateRange& range) const;
  Result<std::vector<DimensionTotal>> transit(const Session& by, ClearingDimension dimension,
                                              const std::string& operator_id,
                                              const DateRange& range) const;

 private:
  Status scope(const Session& by, const std::string& merchant_id, const char* what) const;

  Store& store_;
  const Calendar& calendar_;
  Users& users_;
  Clearing& clearing_;
};

}  // namespace citycard::backend
