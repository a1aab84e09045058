-- A working day's commute: riders go home -> work in the morning and back in the evening, a
-- third of them changing buses on the way; low-balance cards are refused and nothing else.
describe {
  name = "commuters",
  desc = "Trip chains with transfers across a day, morning and evening peaks",
  tags = { "demand", "ci" },
}

city {
  start = "2026-11-23 06:00",
  cards = { count = 4000, balance_fen = { min = 0, max = 8000 } },
  routes = { count = 6, buses_per_route = 4, fare_fen = 200 },
}

riders {
  count = 3000,
  transfer_share = 0.3,
  morning = { from = "06:30", peak = "08:00", to = "09:30" },
  evening = { from = "17:00", peak = "18:00", to = "19:30" },
}

run_until "12:00"
local noon = stats()
run_until "20:00"
drain()
local s = stats()

expect("every rider made two trips", s.trips == 6000, ("%d trips"):format(s.trips))
expect("about a third of trips changed buses", s.transfers > 1500 and s.transfers < 2100,
       ("%d transfers"):format(s.transfers))
expect("the morning peak came before noon", noon.trips == 3000)
expect("refusals are all for balance", s.refusals == s.refusals_insufficient)
expect("takings equal", s.backend_amount_fen == s.validator_amount_fen)
expect("ledger balanced", ledger().balanced)
