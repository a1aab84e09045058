-- Helpers over clearing(): totals that are zero, not nil, for an operator or route with no
-- cleared swipe yet, so a broken run fails its expectation instead of raising an error.
local M = {}

function M.operator(id)
  return clearing().operators[id] or { count = 0, amount_fen = 0 }
end

function M.route(route)
  return clearing().routes[route] or { count = 0, amount_fen = 0 }
end

return M
