-- A bus validator's key is reported compromised mid-morning: the operator revokes its terminal
-- certificate. From its next request the backend refuses it (ErrorReply UNAUTHENTICATED, a
-- clear error on the bus, counted); the CRL lists it, so OpenSSL no longer verifies it; the
-- bus keeps selling offline and keeps every record. The other buses are not affected. At 08:30
-- a technician fits new keys (a new certificate) and the bus uploads everything it kept:
-- nothing is lost and the books balance.
describe {
  name = "cert_revocation",
  desc = "A terminal certificate revoked mid-morning: refused uploads, records kept, new keys",
  tags = { "operator", "pki", "ci" },
}

city {
  start = "2026-11-23 07:00",
  cards = { count = 1500, balance_fen = { min = 2000, max = 10000 } },
  routes = { count = 3, buses_per_route = 4, fare_fen = 200, operator = "bus-co-1" },
  upload_interval_s = 60,
  certificates = true,
}

phase { from = "07:00", to = "09:00", swipes_per_hour = 3000 }

local REVOKED = "R2-B3"

local function bus(vehicle)
  for _, b in ipairs(buses()) do
    if b.vehicle == vehicle then return b end
  end
end

at("07:45", function()
  expect("the terminal's certificate verifies before the revocation",
         certificate(REVOKED).verifies, certificate(REVOKED).why)
  revoke { terminal = REVOKED, reason = "key_compromise" }
  expect_within("the revoked terminal's uploads are refused within 2 minutes", 120,
                function() return stats().refused_uploads > 0 end)
end)

local held -- records the revoked bus kept at 08:29
at("08:29", function()
  local c = certificate(REVOKED)
  expect("the CA records the revocation", c.revoked)
  expect("OpenSSL refuses the revoked certificate by the CRL",
         not c.verifies and c.why:find("revoked") ~= nil, c.why)
  expect("another terminal's certificate still verifies", certificate("R2-B2").verifies,
         certificate("R2-B2").why)
  local b = bus(REVOKED)
  held = b.queued_records
  expect("the revoked bus says why its uploads fail",
         b.last_failure:find("UNAUTHENTICATED") ~= nil and b.last_failure:find("revoked") ~= nil,
         "last_failure: " .. b.last_failure)
  -- 44 minutes of refusals at one poll a minute.
  local s = stats()
  expect("every upload of the revoked bus since 07:46 was refused and counted",
         s.refused_uploads >= 40, ("refused uploads: %d"):format(s.refused_uploads))
  expect("the revoked bus kept its records (about 45 minutes of sales)", held >= 100,
         ("queued on %s: %d"):format(REVOKED, held))
  local others_fine = true
  for _, o in ipairs(buses()) do
    if o.vehicle ~= REVOKED and (o.last_failure ~= "" or o.queued_records > 30) then
      others_fine = false
    end
  end
  expect("the other buses upload as usual", others_fine)
end)

at("08:30", function()
  recommission(REVOKED)
  expect("the new certificate verifies", certificate(REVOKED).verifies, certificate(REVOKED).why)
  expect_within("with new keys the bus uploads what it kept within 5 minutes", 300, function()
    local b = bus(REVOKED)
    return b.last_failure == "" and b.queued_records < 20
  end)
end)

run_until "09:00"
local drained, why = drain(1800)
local s = stats()
expect("everything uploaded", drained and s.queued_records == 0, why)
expect("backend totals equal the validators'", s.backend_amount_fen == s.validator_amount_fen,
       ("backend %d fen, validators %d fen"):format(s.backend_amount_fen, s.validator_amount_fen))
expect("no record rejected", s.rejected_records == 0)
expect("ledger balanced", ledger().balanced)
