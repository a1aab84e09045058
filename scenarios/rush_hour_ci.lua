-- The rush hour of rush_hour.lua at a size ctest can afford: the same peak curve over four
-- hours, 100 buses on 5 routes, 10,000 cards, with link loss, a short outage of two routes
-- and a blacklisted card at the peak. `rush_hour.lua` is the same morning at city scale; the
-- city-scale figure is scenarios_city_bench's.
describe {
  name = "rush_hour_ci",
  desc = "Morning peak, 100 buses, 10,000 cards, lossy links, an outage and a blacklisting",
  tags = { "rush", "ci" },
}

city {
  start = "2026-11-23 06:00",
  cards = { count = 10000, balance_fen = { min = 2000, max = 20000 } },
  routes = { count = 5, buses_per_route = 20, fare_fen = 200, operator = "bus-co-1" },
  upload_interval_s = 60,
  batch_size = 100,
}
faults { link_loss = 0.02, timeout_ms = 3000 }
outage { group = "R1", from = "07:50", to = "08:20" }
outage { group = "R2", from = "07:50", to = "08:20" }

phase {
  from = "06:00", to = "10:00", swipes_per_hour = 3000,
  curve = { 1, 2, 4, 7, 10, 9, 6, 3 },
}

at("08:00", function()
  local v = blacklist(1)
  expect_within("the peak-time blacklisting reaches every bus by 5 minutes after the outage", 1500,
    function()
      for _, b in ipairs(buses()) do if b.blacklist_version < v then return false end end
      return true
    end, 10)
end)

run_until "10:00"
local ok, why = drain(1800)
local s = stats()
expect("the peak happened", s.swipes > 5000, ("only %d swipes"):format(s.swipes))
expect("every record reached the backend once",
       ok and s.queued_records == 0 and s.uploaded_records == s.swipes,
       ("%d swipes, %d uploaded, %d still queued; %s"):format(
         s.swipes, s.uploaded_records, s.queued_records, tostring(why)))
expect("the backend's takings equal the validators'",
       s.backend_amount_fen == s.validator_amount_fen,
       ("backend %d fen, validators %d fen"):format(s.backend_amount_fen, s.validator_amount_fen))
expect("ledger balanced", ledger().balanced)
