// The backend's operator reports (report_data.h) and settlement batches (settlement.h) written
// into a run's trace at its end, so `reports/` renders them from the trace alone:
//   op_issuance       issuance statistics over the whole run, issued per day
//   op_transactions   transaction counts by type
//   op_failures       failure rates
//   op_merchant       a merchant's day or month summary (period_kind "day" | "month")
//   op_terminal       a terminal's day or month summary
//   op_transit        transit totals by route, vehicle or driver (dimension)
//   settlement_batch  every settlement batch with its lines (nothing is prepared or approved
//                     here: the books are not touched)
// Reading the reports needs a staff session: when the backend has no user yet, an admin
// "citycard-reports" is bootstrapped for it (a users row and an audit row; no money). When
// the scenario made users of its own, the reports are skipped and an
// "operator_reports_skipped" event says why.
//
// Threads: the runner's (the backend's one caller).
#pragma once

#include <cstdint>

#include "citycard/backend/backend.h"
#include "citycard/reports/trace.h"

namespace citycard::scenarios {

// `by`: a staff session to read with; null: the runner's own (see above).
void trace_operator_reports(backend::Backend& backend, reports::TraceWriter& trace,
                            std::int64_t t_us, const backend::Session* by = nullptr);

}  // namespace citycard::scenarios
