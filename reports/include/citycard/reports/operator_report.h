// The backend's operator reports and settlement, rendered from a run's trace: the op_* and
// settlement_batch events the runner writes at the end of a run (scenarios/src/
// operator_trace.h) become HTML sections and CSV files.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "citycard/reports/report.h"

namespace citycard::reports {

// Sections for report.html: issuance, transactions by type, failure rates, merchant and
// terminal day/month summaries, transit by route/vehicle/driver, settlement batches. Empty when
// the trace has no operator events.
std::string operator_html_sections(const TraceStats& stats);

// (file name, contents) of every operator CSV the trace has data for: issuance.csv,
// transactions.csv, failure_rates.csv, merchant_summary.csv, terminal_summary.csv,
// transit.csv, settlement.csv and bank_batch_<id>.csv per batch whose file was written.
std::vector<std::pair<std::string, std::string>> operator_csv_files(const TraceStats& stats);

// A settlement_batch event's outstanding payouts (pending or returned, with their payout refs)
// in the bank batch-payment file layout of settlement.h:
//   # citycard batch payment file v1
//   H,<batch id>,<business date>,<line count>,<total fen>
//   D,<n>,<payout ref>,<payee kind>,<payee id>,<account name>,<bank name>,<bank account>,
//     <amount fen>,<amount yuan>,CNY,settlement <from>-<to>
//   T,<line count>,<total fen>
// Right after the backend wrote the batch's file, this is that file byte for byte.
std::string bank_batch_file(const Json& settlement_batch);

}  // namespace citycard::reports
