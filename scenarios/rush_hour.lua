-- The standard rush-hour workload: a city's morning peak on 40 bus routes.
--
-- In virtual time (`citycard run`) it is a four-hour morning with its peak curve, checked end
-- to end. In wall time (`citycard load`) the same city and curve are replayed against a backend
-- over ZeroMQ tcp: the four hours are compressed into `duration_s`, the curve's peak is
-- `rate_per_s` arrivals per second, and arrivals are a mix of swipes (real card and PSAM
-- purchases whose records the buses upload in signed batches) and online requests. Everything
-- after run_until belongs to virtual time. See scenarios/README.md, "Load in wall time".
describe {
  name = "rush_hour",
  desc = "Morning peak on 40 bus routes: 50,000 cards, 1,000 buses, 06:00-10:00 peak curve",
  tags = { "load" },
  load = {
    rate_per_s = 5000,         -- arrivals per second at the curve's peak (--rate overrides)
    duration_s = 20,           -- the four hours in wall time (--duration overrides)
    arrivals = "poisson",
    -- Swipes are the bulk workload; balance queries stand in for online transactions
    -- (POS purchase, recharge authorisation) until the backend serves those; pings are
    -- terminal heartbeats.
    mix = { swipe = 0.90, balance_query = 0.08, ping = 0.02 },
    batch_size = 100,          -- records per signed upload batch
    upload_interval_ms = 5000, -- a record waits at most this on its bus before upload
  },
}

local fares = require "lib.fares"

city {
  start = "2026-11-23 06:00",
  -- Balances high enough that a card is not emptied by a long load run at many times the
  -- real peak (issuance caps a card at 1,000 yuan).
  cards = { count = 50000, balance_fen = { min = 50000, max = 100000 } },
  routes = { count = 40, buses_per_route = 25, fare_fen = fares.flat_fen, operator = "bus-co-1" },
  upload_interval_s = 60,
  batch_size = 100,
}

-- Half-hour steps from 06:00 to 10:00, peaking 08:00-08:30.
phase {
  from = "06:00", to = "10:00", swipes_per_hour = 60000,
  curve = { 1, 2, 4, 7, 10, 9, 6, 3 },
}

run_until "10:00"
drain()

local s = stats()
local l = ledger()
expect("the peak happened", s.swipes > 100000, ("only %d swipes"):format(s.swipes))
expect("no card refused for another reason than its balance",
       s.refusals == s.refusals_insufficient)
expect("every record reached the backend once",
       s.queued_records == 0 and s.uploaded_records == s.swipes and s.duplicate_records == 0,
       ("%d swipes, %d uploaded, %d duplicates, %d still queued"):format(
         s.swipes, s.uploaded_records, s.duplicate_records, s.queued_records))
expect("the backend's takings equal the validators'",
       s.backend_amount_fen == s.validator_amount_fen)
expect("ledger balanced", l.balanced, l.problem)
