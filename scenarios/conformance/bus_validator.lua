-- Conformance suite for a bus validator (flat fare, card-type discounts, transfer discount).
-- Run: citycard certify --suite scenarios/conformance/bus_validator.lua --terminal tcp://0.0.0.0:5600
-- The API (card, tap, uploaded, params, blacklist, link, ...) is in hil/README.md.
-- Each case names what it checks; each can fail on a terminal with the matching defect
-- (citycard terminal --defect ...; the ctest CertifySuite.* shows which fails which).

suite {
  name = "bus_validator",
  version = "1.0",
  -- What the terminal holds at the start of every case.
  params = { fare = 200, transfer_window = 5400, transfer_discount = 100,
             discounts = { 0, 5000, 10000, 0 } },  -- adult, student -50%, elder free, staff
}

-- The card-time budget of one tap under the timing model (card processing and air time as
-- the card model computes them), not wall time.
local BUDGET_US = 60000  -- a correct tap of this suite takes ~51 ms of card time

local function count(list, prefix)
  local n = 0
  for _, a in ipairs(list) do
    if a:sub(1, #prefix) == prefix then n = n + 1 end
  end
  return n
end

local function index_of(list, prefix)
  for i, a in ipairs(list) do
    if a:sub(1, #prefix) == prefix then return i end
  end
  return nil
end

case("purchase_apdu_order", "SELECT, then INITIALIZE FOR PURCHASE, then one DEBIT; 9000 each",
function()
  local c = card { balance = 1000 }
  local r = tap(c)
  expect(r.accepted, "the sale was refused: " .. r.reason)
  local sel, init, debit = index_of(r.apdus, "00a4"), index_of(r.apdus, "8050"),
                           index_of(r.apdus, "8054")
  expect(sel and init and debit, "SELECT, INITIALIZE and DEBIT all sent")
  expect(sel and init and sel < init, "SELECT before INITIALIZE FOR PURCHASE")
  expect(init and debit and init < debit, "INITIALIZE FOR PURCHASE before DEBIT")
  expect(count(r.apdus, "8054") == 1, "exactly one DEBIT")
  expect(r.apdus[debit or 1] == "8054:9000", "the DEBIT was accepted: " .. tostring(r.apdus[debit or 1]))
  expect(balance(c) == 800, "one fare taken, balance " .. balance(c))
end)

case("mac1_right", "the card accepts the terminal's MAC1, on both card families",
function()
  for _, family in ipairs { "jtt978", "cjt166" } do
    local c = card { balance = 1000, family = family }
    local r = tap(c)
    local debit = index_of(r.apdus, "8054")
    expect(debit ~= nil, family .. ": a DEBIT was sent")
    expect(debit and r.apdus[debit] == "8054:9000",
           family .. ": the card accepted MAC1 (DEBIT answered " .. tostring(debit and r.apdus[debit]) .. ")")
    expect(balance(c) == 800, family .. ": balance " .. balance(c))
  end
end)

case("record_uploaded_once_with_fields", "the purchase record reaches the backend once, fields right",
function()
  local c = card { balance = 1000 }
  local r = tap(c)
  expect(r.accepted, "sale refused: " .. r.reason)
  expect(settle(), "the terminal uploaded its queue")
  local recs = uploaded(c)
  expect(#recs == 1, "one record uploaded, not " .. #recs)
  local rec = recs[1] or {}
  expect(rec.amount == 200, "amount 200, not " .. tostring(rec.amount))
  expect(rec.balance_before == 1000, "balance before 1000, not " .. tostring(rec.balance_before))
  expect(rec.counter == 0, "the card's first offline counter, not " .. tostring(rec.counter))
  expect(rec.operator == "bus-co-1" and rec.route == "route-1" and rec.vehicle == "bus-0001",
         "operator, route and vehicle from the Welcome")
  expect(rec.tac ~= nil and #rec.tac == 8, "a 4-byte TAC")
  expect(backend_balance(c) == balance(c), "the backend follows the card")
end)

case("fare_and_discounts", "flat fare for adults, -50% students, elders free",
function()
  local adult, student, elder = card { balance = 1000 }, card { balance = 1000, type = "student" },
                                card { balance = 1000, type = "elder" }
  local ra, rs, re = tap(adult), tap(student), tap(elder)
  expect(ra.charged == 200, "adult pays 200, charged " .. ra.charged)
  expect(rs.charged == 100, "student pays 100, charged " .. rs.charged)
  expect(re.accepted and re.charged == 0, "elder rides free, charged " .. re.charged)
  expect(balance(student) == 900, "student balance 900, is " .. balance(student))
  settle()
  local rec = uploaded(student)[1] or {}
  expect(rec.fare_full == 200, "the record keeps the full fare 200")
end)

case("transfer_window", "a transfer within the window is discounted, outside it is not",
function()
  local inside, outside = card { balance = 1000 }, card { balance = 1000 }
  ride_elsewhere(inside, 200)
  ride_elsewhere(outside, 200)
  advance(600)            -- 10 minutes later: within 90
  local r1 = tap(inside)
  advance(6000)           -- 110 minutes after the first ride
  local r2 = tap(outside)
  expect(r1.charged == 100, "transfer within 90 min pays 100, charged " .. r1.charged)
  expect(r2.charged == 200, "outside the window pays 200, charged " .. r2.charged)
  settle()
  local rec = uploaded(inside)[1] or {}
  expect(rec.transfer == 1, "the record counts the transfer")
end)

case("blacklisted_card_refused_and_blocked", "a blacklist update is taken; the card is refused and locked",
function()
  local c = card { balance = 1000 }
  blacklist { c }
  local r = tap(c)
  expect(not r.accepted, "a blacklisted card is refused")
  expect(r.reason == "blacklisted", "refused as blacklisted, not '" .. r.reason .. "'")
  expect(blocked(c), "the card's application is locked")
  expect(balance(c) == 1000, "nothing taken, balance " .. balance(c))
  local again = tap(c)
  expect(not again.accepted, "refused again on the next tap")
end)

case("expired_card_refused", "a card past its validity is refused, nothing taken",
function()
  local c = card { balance = 1000, expired = true }
  local r = tap(c)
  expect(not r.accepted and r.reason == "expired", "refused as expired, not '" .. r.reason .. "'")
  expect(balance(c) == 1000, "nothing taken")
  expect(count(r.apdus, "8054") == 0, "no DEBIT sent")
end)

case("insufficient_balance", "a card that cannot pay is refused, nothing taken",
function()
  local c = card { balance = 150 }
  local r = tap(c)
  expect(not r.accepted and r.reason == "insufficient_balance",
         "refused for balance, not '" .. r.reason .. "'")
  expect(balance(c) == 150, "nothing taken")
end)

case("tear_at_every_step_recovered", "a card pulled at any APDU is charged exactly once after the re-tap",
function()
  local probe = card { balance = 1000 }
  local steps = #tap(probe).apdus
  expect(steps >= 4, "a tap has at least 4 card APDUs, saw " .. steps)
  for step = 0, steps - 1 do
    for _, after in ipairs { false, true } do
      local c = card { balance = 1000 }
      local torn = tap(c, { tear_at = step, after = after })
      local label = "step " .. step .. (after and " (after the card acted)" or " (before)")
      expect(torn.torn, label .. ": the card was pulled")
      local again = tap(c)
      expect(again.accepted, label .. ": the re-tap completes (" .. again.reason .. ")")
      expect(balance(c) == 800, label .. ": charged once, balance " .. balance(c))
    end
  end
  expect(settle(), "the terminal uploaded everything")
  local ok, why = conserved()
  expect(ok, "the books balance: " .. why)
end)

case("offline_then_upload", "sales go on while the link is down; all upload when it is back",
function()
  link(false)
  local a, b = card { balance = 1000 }, card { balance = 1000 }
  local ra, rb = tap(a), tap(b)
  expect(ra.accepted and rb.accepted, "sold offline")
  expect(queued(2), "two records held while offline")
  link(true)
  expect(settle(), "the queue empties once the link is back")
  expect(backend_balance(a) == 800 and backend_balance(b) == 800, "the backend has both sales")
end)

case("duplicate_upload_harmless", "a batch whose ack was lost is sent again; the backend counts it once",
function()
  local c = card { balance = 1000 }
  lose_next_reply()
  local r = tap(c)
  expect(r.accepted, "sold")
  expect(settle(), "the terminal takes the duplicate answer as done")
  expect(backend_balance(c) == 800, "charged once at the backend, believes " .. backend_balance(c))
  local ok, why = conserved()
  expect(ok, "the books balance: " .. why)
end)

case("transaction_time_within_budget", "a tap's card time (timing model) is within " .. BUDGET_US // 1000 .. " ms",
function()
  local c = card { balance = 1000 }
  local r = tap(c)
  expect(r.accepted, "sold")
  expect(r.card_us <= BUDGET_US, "card time " .. r.card_us .. " us over the budget " .. BUDGET_US)
end)

case("parameter_update_taken", "a new fare table is used from the next tap",
function()
  params { fare = 300, transfer_window = 5400, transfer_discount = 100, discounts = { 0, 5000, 10000, 0 } }
  local c = card { balance = 1000 }
  local r = tap(c)
  expect(r.charged == 300, "the new fare 300, charged " .. r.charged)
end)
