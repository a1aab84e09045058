-- The clearing centre crashes in the middle of the peak and restarts from its SQLite file two
-- minutes later. Buses keep selling, retry their uploads, and every sale is cleared once.
describe {
  name = "backend_crash",
  desc = "Backend dies at the peak and restarts from its store; nothing acknowledged is lost",
  tags = { "faults", "ci" },
}

local cleared = require "lib.clearing"

city {
  start = "2026-11-23 07:00",
  cards = { count = 2000, balance_fen = { min = 2000, max = 10000 } },
  routes = { count = 4, buses_per_route = 3, fare_fen = 200 },
  upload_interval_s = 30,
  network = { timeout_ms = 3000 },
}

phase { from = "07:00", to = "08:00", swipes_per_hour = 8000, curve = { 1, 2, 4, 4, 2, 1 } }
backend_crash { at = "07:25", down_s = 120 }
backend_crash { at = "07:41", down_s = 30 }

local up_during
at("07:26", function() up_during = stats().backend_up end)

run_until "08:00"
local ok, why = drain(1800)
local s = stats()

expect("the backend was really down", up_during == false and s.backend_crashes == 2)
expect("uploads failed while it was down", s.upload_failures > 0)
expect("everything uploaded after the restarts", ok and s.queued_records == 0, why)
expect("takings equal after restarts", s.backend_amount_fen == s.validator_amount_fen,
       ("backend %d fen, validators %d fen"):format(s.backend_amount_fen, s.validator_amount_fen))
expect("every sale cleared exactly once", s.uploaded_records + s.duplicate_records >= s.swipes
       and cleared.operator("bus-co-1").count == s.swipes)
expect("ledger balanced", ledger().balanced)
