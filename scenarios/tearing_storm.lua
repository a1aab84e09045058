-- A tearing storm: riders pull their cards away mid-tap (before, after or during a command) on
-- 2 % of the APDU exchanges. A rider whose tap failed taps again on the same bus, which
-- completes the torn sale from the card's proof or charges now: nobody pays twice, no sale is
-- lost, and every card's balance moved by exactly what the records say.
describe {
  name = "tearing_storm",
  desc = "Cards torn on 2% of exchanges: every card's money equals its recorded sales",
  tags = { "faults", "cards", "ci" },
}

city {
  start = "2026-11-23 07:00",
  cards = { count = 800, balance_fen = { min = 3000, max = 8000 } },
  routes = { count = 2, buses_per_route = 3, fare_fen = 200, operator = "bus-co-1" },
  upload_interval_s = 60,
}
faults { tear = 0.02 }

phase { from = "07:00", to = "08:00", swipes_per_hour = 4000 }
run_until "08:00"
local ok, why = drain(1800)
local s = stats()
local c = card_check()

expect("the storm tore taps", s.torn > 50, ("only %d torn taps"):format(s.torn))
expect("torn sales were completed on the re-tap", s.recovered > 0,
       ("%d torn, %d recovered"):format(s.torn, s.recovered))
expect("every card's balance moved by exactly its recorded sales", c.off == 0,
       ("%d cards off; first: %s"):format(c.off, c.first_problem))
expect("everything uploaded", ok and s.queued_records == 0, why)
expect("records reached clearing once", s.uploaded_records == s.swipes and
       s.backend_amount_fen == s.validator_amount_fen,
       ("%d sales, %d cleared; %d fen vs %d fen"):format(s.swipes, s.uploaded_records,
                                                          s.validator_amount_fen, s.backend_amount_fen))
expect("ledger balanced", ledger().balanced)
