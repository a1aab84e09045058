-- Operator actions reach the buses over their own links: a card blacklisted and a fare table
-- changed mid-morning reach every bus within five minutes, except the buses of a route that
-- is cut off, which get them within five minutes of the link coming back; then the listed card
-- is refused everywhere and the new fare is charged.
describe {
  name = "blacklist_outage",
  desc = "Blacklist and fare table propagation to buses under a GPRS outage of one route",
  tags = { "operator", "faults", "ci" },
}

city {
  start = "2026-11-23 07:00",
  cards = { count = 1500, balance_fen = { min = 2000, max = 10000 } },
  routes = { count = 3, buses_per_route = 4, fare_fen = 200, operator = "bus-co-1" },
  upload_interval_s = 60,
}

phase { from = "07:00", to = "09:00", swipes_per_hour = 3000 }
outage { group = "R1", from = "07:30", to = "08:30" }

local STOLEN = 7            -- the card reported stolen
local version               -- the blacklist version that lists it

-- Every bus whose route satisfies `which` holds blacklist version `v` or newer.
local function have_version(which, v)
  for _, b in ipairs(buses()) do
    if which(b.route) and b.blacklist_version < v then return false end
  end
  return true
end
local function outside(route) return route ~= "R1" end
local function cut_off(route) return route == "R1" end
local function charging(route, fen)
  for _, b in ipairs(buses()) do
    if b.route == route and b.fare_fen ~= fen then return false end
  end
  return true
end

at("07:40", function()
  version = blacklist(STOLEN)
  expect_within("the blacklist reaches every connected bus within 5 minutes", 300,
                function() return have_version(outside, version) end)
  fare_table { route = "R2", flat_fen = 250 }
  expect_within("the new R2 fare reaches every R2 bus within 5 minutes", 300,
                function() return charging("R2", 250) end)
end)

local cut_off_had_it
at("08:25", function() cut_off_had_it = have_version(cut_off, version) end)

at("08:30", function()
  expect_within("the blacklist reaches the cut-off buses within 5 minutes of the link", 300,
                function() return have_version(cut_off, version) end)
end)

run_until "08:40"
expect("the outage kept the blacklist from route R1", cut_off_had_it == false,
       "an R1 bus had the new blacklist while its link was down")

local refused_everywhere = true
for _, vehicle in ipairs({ "R1-B1", "R2-B3", "R3-B4" }) do
  local ok, why = tap { card = STOLEN, vehicle = vehicle }
  if ok or (why ~= "blacklisted" and why ~= "card_blocked") then
    refused_everywhere = false
  end
end
expect("the stolen card is refused on every route", refused_everywhere)

local ok, paid = tap { card = 8, vehicle = "R2-B1" }
expect("an R2 bus charges the new fare", ok and paid == 250,
       ("tap: %s %s"):format(tostring(ok), tostring(paid)))

run_until "09:00"
local drained, why = drain(1800)
local s = stats()
expect("everything uploaded", drained and s.queued_records == 0, why)
expect("backend totals equal the validators'", s.backend_amount_fen == s.validator_amount_fen,
       ("backend %d fen, validators %d fen"):format(s.backend_amount_fen, s.validator_amount_fen))
expect("ledger balanced", ledger().balanced)
