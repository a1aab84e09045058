-- The default scenario: a small city's morning hour, every layer end to end.
-- Cards tap on bus validators (real purse APDUs and PSAM MACs), validators upload signed
-- batches over the simulated GPRS network, the backend verifies every TAC, posts to the ledger
-- and clears by route and operator.
describe {
  name = "smoke",
  desc = "A morning hour in a small city: 3,000 cards, 4 routes, 20 buses, flat fare",
  tags = { "smoke", "ci" },
}

local cleared = require "lib.clearing"

local fares = require "lib.fares"

city {
  start = "2026-11-23 07:00",
  cards = { count = 3000, balance_fen = { min = 300, max = 10000 } },
  routes = { count = 4, buses_per_route = 5, fare_fen = fares.flat_fen, operator = "bus-co-1" },
  network = { latency_ms = 40, jitter_ms = 20, loss = 0.0 },
  upload_interval_s = 60,
}

phase { from = "07:00", to = "08:00", swipes_per_hour = 12000 }

run_until "08:00"
drain()  -- let every validator upload what it holds

local s = stats()
local l = ledger()

expect("thousands of swipes happened", s.swipes > 10000,
       ("only %d swipes"):format(s.swipes))
expect("some low-balance cards were refused, none for another reason",
       s.refusals == s.refusals_insufficient,
       ("%d refusals, %d for insufficient balance"):format(s.refusals, s.refusals_insufficient))
expect("every record reached the backend", s.queued_records == 0 and s.uploaded_records == s.swipes,
       ("%d swipes, %d uploaded, %d still queued"):format(s.swipes, s.uploaded_records, s.queued_records))
expect("no record rejected or duplicated", s.rejected_records == 0 and s.duplicate_records == 0)
expect("the backend's takings equal the validators'", s.backend_amount_fen == s.validator_amount_fen,
       ("backend %d fen, validators %d fen"):format(s.backend_amount_fen, s.validator_amount_fen))
expect("ledger balanced", l.balanced, l.problem)
expect("clearing per operator equals the validators' takings",
       cleared.operator("bus-co-1").amount_fen == s.validator_amount_fen)
