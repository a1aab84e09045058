-- A bus that loses its GPRS link for an hour keeps selling, then uploads everything when the
-- link returns; the backend's totals equal the validators' and nothing is counted twice.
describe {
  name = "bus_outage",
  desc = "Route R1 loses its link for an hour mid-morning; every sale still reaches clearing once",
  tags = { "faults", "ci" },
}

city {
  start = "2026-11-23 07:00",
  cards = { count = 2000, balance_fen = { min = 2000, max = 10000 } },
  routes = { count = 3, buses_per_route = 4, fare_fen = 200, operator = "bus-co-1" },
  upload_interval_s = 60,
}

phase { from = "07:00", to = "09:00", swipes_per_hour = 6000 }
outage { group = "R1", from = "07:30", to = "08:30" }

local queued_during
at("08:15", function() queued_during = stats().queued_records end)

run_until "09:00"
local ok, why = drain(1800)
local s = stats()

expect("records piled up on the cut-off buses", queued_during and queued_during > 300,
       ("only %s records queued during the outage"):format(tostring(queued_during)))
expect("everything uploaded after the link came back", ok and s.queued_records == 0, why)
expect("backend totals equal the validators' batch totals", s.backend_amount_fen == s.validator_amount_fen,
       ("backend %d fen, validators %d fen"):format(s.backend_amount_fen, s.validator_amount_fen))
expect("no record lost or doubled", s.uploaded_records == s.swipes,
       ("%d swipes, %d records cleared"):format(s.swipes, s.uploaded_records))
expect("ledger balanced", ledger().balanced)
