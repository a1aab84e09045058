-- A taxi shift in a city with a card-type mix: buses and taxis run side by side, the taxi
-- fleet's link drops for an hour and taxi T1 loses power while it holds unsent records. Its
-- durable log brings them back at power-on; every taxi fare and every discounted bus fare
-- reaches clearing exactly once. Fails with --defect taxi_log_in_ram (the log kept in RAM).
describe {
  name = "taxi_shift",
  desc = "Taxis lose their link and T1 its power mid-shift; every fare still reaches clearing once",
  tags = { "faults", "taxi", "ci" },
}

city {
  start = "2026-11-23 07:00",
  cards = { count = 1500, balance_fen = { min = 20000, max = 50000 },
            mix = { adult = 0.7, student = 0.2, elder = 0.1 },
            discount_bp = { student = 5000, elder = 5000 } },
  routes = { count = 2, buses_per_route = 3, fare_fen = 200, operator = "bus-co-1" },
  taxis = { count = 8, operator = "taxi-co-1" },
  upload_interval_s = 60,
}

phase { from = "07:00", to = "09:00", swipes_per_hour = 2000 }
taxi_trips { from = "07:00", to = "09:00", per_hour = 240 }
outage { group = "T", from = "07:20", to = "08:20" }
power_loss { taxi = "T1", at = "08:00" }

local queued_before
at("07:59", function() queued_before = stats().queued_records end)

run_until "09:00"
local ok, why = drain(1800)
local s = stats()
local t = s.by_type

expect("taxi records piled up while the link was down", queued_before and queued_before > 20,
       ("only %s records queued before the power loss"):format(tostring(queued_before)))
expect("T1 lost power once", s.power_losses == 1)
expect("everything uploaded after the link came back", ok and s.queued_records == 0, why)
expect("no record lost or doubled", s.uploaded_records == s.swipes + s.taxi_trips,
       ("%d bus swipes + %d taxi trips, %d records cleared"):format(s.swipes, s.taxi_trips,
                                                                    s.uploaded_records))
expect("backend totals equal what buses and taxis charged",
       s.backend_amount_fen == s.validator_amount_fen + s.taxi_amount_fen,
       ("backend %d fen, buses %d + taxis %d fen"):format(s.backend_amount_fen,
                                                          s.validator_amount_fen, s.taxi_amount_fen))
expect("adults, students and elders all rode",
       t.student.swipes > 0 and t.elder.swipes > 0 and t.adult.swipes > 0)
local cc = card_check()
expect("every card's money accounted for", cc.off == 0, cc.first_problem)
expect("ledger balanced", ledger().balanced)
