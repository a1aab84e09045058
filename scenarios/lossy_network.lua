-- A bad GPRS day: messages lost, duplicated and reordered. Re-sent batches and duplicated
-- requests must change nothing at the backend: every sale is cleared once.
describe {
  name = "lossy_network",
  desc = "20% loss, 5% duplication, 5% reordering; uploads still exactly once",
  tags = { "faults", "ci" },
}

local cleared = require "lib.clearing"

city {
  start = "2026-11-23 07:00",
  cards = { count = 1500, balance_fen = { min = 3000, max = 10000 } },
  routes = { count = 3, buses_per_route = 3, fare_fen = 200 },
  upload_interval_s = 20,
}
faults { link_loss = 0.2, duplicate = 0.05, reorder = 0.05, timeout_ms = 2000 }

phase { from = "07:00", to = "07:45", swipes_per_hour = 6000 }
run_until "07:45"
local ok, why = drain(7200)
local s = stats()

expect("the network really misbehaved", s.network_lost > 20 and s.network_duplicated > 5,
       ("%d lost, %d duplicated"):format(s.network_lost, s.network_duplicated))
expect("everything uploaded", ok and s.queued_records == 0, why)
expect("duplicates were recognised, not cleared", cleared.operator("bus-co-1").count == s.swipes)
expect("takings equal", s.backend_amount_fen == s.validator_amount_fen)
expect("ledger balanced", ledger().balanced)
