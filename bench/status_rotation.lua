-- wrk script for bench/bench_service.py: GET /api/releases/ID with ID going 1, 2, ..., N, 1, ...
-- so that a run reads every one of the N seeded releases (N: the first argument after "--").
local n = 100
local i = 0

function init(args)
  n = tonumber(args[1]) or n
end

function request()
  i = i % n + 1
  return wrk.format(nil, "/api/releases/" .. i)
end
