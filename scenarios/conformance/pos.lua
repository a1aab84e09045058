-- Conformance suite for a POS terminal (a shop's card reader): the sale amount comes from the
-- parameters (params.fare: the amount the cashier keys in for each tap in this suite).
-- Run: citycard certify --suite scenarios/conformance/pos.lua --terminal tcp://0.0.0.0:5601
-- with the terminal under test started as kind "pos". API: hil/README.md.

suite {
  name = "pos",
  version = "1.0",
  params = { fare = 1234 },
}

local BUDGET_US = 60000  -- a correct tap of this suite takes ~51 ms of card time

local function index_of(list, prefix)
  for i, a in ipairs(list) do
    if a:sub(1, #prefix) == prefix then return i end
  end
  return nil
end

case("sale_amount_charged", "the keyed amount is charged whatever the card type",
function()
  local adult, student = card { balance = 5000 }, card { balance = 5000, type = "student" }
  local ra, rs = tap(adult), tap(student)
  expect(ra.charged == 1234 and balance(adult) == 3766, "adult charged " .. ra.charged)
  expect(rs.charged == 1234 and balance(student) == 3766, "no fare discount in a shop, charged " .. rs.charged)
  local debit = index_of(ra.apdus, "8054")
  expect(debit and ra.apdus[debit] == "8054:9000", "the DEBIT (MAC1) was accepted")
end)

case("sale_uploaded", "the sale reaches the backend once",
function()
  local c = card { balance = 5000 }
  tap(c)
  expect(settle(), "uploaded")
  expect(backend_balance(c) == 3766, "the backend has the sale")
end)

case("insufficient_balance", "a card that cannot pay is refused",
function()
  local c = card { balance = 1000 }
  local r = tap(c)
  expect(not r.accepted and r.reason == "insufficient_balance", "refused, not '" .. r.reason .. "'")
  expect(balance(c) == 1000, "nothing taken")
end)

case("blacklisted_card_refused_and_blocked", "a blacklisted card is refused and locked",
function()
  local c = card { balance = 5000 }
  blacklist { c }
  local r = tap(c)
  expect(r.reason == "blacklisted" and blocked(c), "refused and locked, reason '" .. r.reason .. "'")
end)

case("expired_card_refused", "a card past its validity is refused",
function()
  local c = card { balance = 5000, expired = true }
  local r = tap(c)
  expect(r.reason == "expired" and balance(c) == 5000, "refused as expired, not '" .. r.reason .. "'")
end)

case("tear_at_every_step_recovered", "a card pulled at any APDU is charged exactly once after the re-tap",
function()
  local steps = #tap(card { balance = 5000 }).apdus
  for step = 0, steps - 1 do
    local c = card { balance = 5000 }
    tap(c, { tear_at = step, after = true })
    local again = tap(c)
    expect(again.accepted and balance(c) == 3766,
           "step " .. step .. ": charged once, balance " .. balance(c))
  end
  expect(settle(), "uploaded")
end)

case("offline_then_upload", "sales go on offline and upload later",
function()
  link(false)
  local c = card { balance = 5000 }
  expect(tap(c).accepted, "sold offline")
  expect(queued(1), "held while offline")
  link(true)
  expect(settle() and backend_balance(c) == 3766, "uploaded once the link is back")
end)

case("transaction_time_within_budget", "card time within " .. BUDGET_US // 1000 .. " ms",
function()
  local r = tap(card { balance = 5000 })
  expect(r.card_us <= BUDGET_US, "card time " .. r.card_us .. " us")
end)
