-- Validators' clocks drift while their buses are offline. Records carry the bus's own time;
-- the backend still clears every one, and the drift stays within what sign-on can correct.
describe {
  name = "clock_drift",
  desc = "Per-bus clock drift (200 ppm) on buses offline for two hours",
  tags = { "faults" },
}

local cleared = require "lib.clearing"

city {
  start = "2026-11-23 06:00",
  cards = { count = 1500, balance_fen = { min = 3000, max = 10000 } },
  routes = { count = 2, buses_per_route = 4, fare_fen = 200 },
}
faults { clock_drift_ppm = 200 }
outage { group = "", from = "06:30", to = "08:30" }   -- every bus offline

phase { from = "06:00", to = "09:00", swipes_per_hour = 3000 }
run_until "09:00"
local ok, why = drain(1800)
local s = stats()

expect("clocks drifted measurably", s.max_clock_error_ms > 1000,
       ("max error %d ms"):format(s.max_clock_error_ms))
expect("everything uploaded after the outage", ok and s.queued_records == 0, why)
expect("every drifted record cleared", cleared.operator("bus-co-1").count == s.swipes)
expect("ledger balanced", ledger().balanced)
