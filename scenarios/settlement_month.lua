-- A month of daily settlement for the bus operator: every night at 01:00 finance prepares the
-- previous day's batch, a second finance user approves it, the bank executes the payment file
-- and the statement is reconciled. Each day's gross must equal what the backend cleared that
-- day, fee + net = gross, and every payout must be confirmed by the bank.
describe {
  name = "settlement_month",
  desc = "Thirty daily settlement cycles, four eyes, bank file and reconciliation",
  tags = { "operator", "settlement", "ci" },
}

local DAYS = 30
local FEE_BP = 20
city {
  start = "2026-11-01 06:00",
  cards = { count = 400, balance_fen = { min = 20000, max = 20000 } },
  routes = { count = 2, buses_per_route = 2, fare_fen = 200, operator = "bus-co-1" },
  upload_interval_s = 600,
}

local function at_day(d, hhmm) return ("2026-11-%02d %s"):format(d, hhmm) end

local cleared_by_day = {}   -- what the backend cleared on day d (uploads arrive the same day)
local settled = {}          -- settle{} outcome on the morning of day d
local last_cleared = 0
for d = 1, DAYS do
  phase { from = at_day(d, "07:00"), to = at_day(d, "09:00"), swipes_per_hour = 200 }
  at(at_day(d, "23:50"), function()
    local now_cleared = stats().backend_amount_fen
    cleared_by_day[d] = now_cleared - last_cleared
    last_cleared = now_cleared
  end)
  if d > 1 then
    at(at_day(d, "01:00"), function() settled[d] = settle { fee_bp = FEE_BP } end)
  end
end

run_until(at_day(DAYS, "02:00"))

local gross_ok, sums_ok, paid_ok, recon_ok = true, true, true, true
local why_gross, why_sums, why_paid, why_recon
local total_gross, total_net = 0, 0
for d = 2, DAYS do
  local s, want = settled[d], cleared_by_day[d - 1]
  if s.gross_fen ~= want and gross_ok then
    gross_ok = false
    why_gross = ("day %d: settled %d fen, cleared %d fen the day before"):format(d, s.gross_fen, want)
  end
  if s.fee_fen + s.net_fen ~= s.gross_fen and sums_ok then
    sums_ok = false
    why_sums = ("day %d: fee %d + net %d ~= gross %d"):format(d, s.fee_fen, s.net_fen, s.gross_fen)
  end
  if (s.confirmed_fen ~= s.file_fen or s.file_fen ~= s.net_fen) and paid_ok then
    paid_ok = false
    why_paid = ("day %d: net %d, bank file %d, confirmed by the bank %d"):format(
      d, s.net_fen, s.file_fen, s.confirmed_fen)
  end
  if s.differences ~= 0 and recon_ok then
    recon_ok = false
    why_recon = ("day %d: %d differences, first: %s"):format(d, s.differences, s.first_difference)
  end
  total_gross = total_gross + s.gross_fen
  total_net = total_net + s.net_fen
end

expect("each day's settlement equals the day's clearing", gross_ok, why_gross)
expect("fee + net = gross on every batch", sums_ok, why_sums)
expect("every payout is in the bank file and confirmed by the bank", paid_ok, why_paid)
expect("reconciliation finds no difference", recon_ok, why_recon)
expect("a month was settled", total_gross > 0 and settled[DAYS].settled_through == 20261129,
       ("settled through %d"):format(settled[DAYS].settled_through))
expect("ledger balanced", ledger().balanced, ledger().problem)
