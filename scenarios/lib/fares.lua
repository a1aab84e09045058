-- Shared fare constants for the scenario library.
local M = {}
M.flat_fen = 200          -- 2 yuan, the common flat bus fare
return M
