-- An exact number of requests from wrk, which by itself only runs for a duration.
--
-- Used by wrk_exact() in tests/bench/harness.py; run it with one wrk thread (the count and
-- the ids are per thread). Arguments after wrk's "--": method, path, body, ids file, count.
--   path without "{id}": send `count` requests; write the "id" of each response body to the
--                        ids file, one a line (POST: create objects).
--   path with "{id}":    send one request per id read from the ids file (PATCH, DELETE).
-- When the last response is in, the script writes "<ids file>.times": the CLOCK_MONOTONIC
-- time the first request was sent, then each response's arrival, one a line (comparable
-- between wrk processes, for rates over the time two runs overlapped). Then it prints
--   exact: <requests> requests in <seconds> s, <errors> errors
-- timed from the first request sent to the last response received, and stops its thread;
-- wrk itself sleeps out its duration, so the caller stops it (SIGINT) on that line.

local ffi = require("ffi")
ffi.cdef [[
struct exact_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clock, struct exact_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local PARKED_MS = 3600 * 1000

local function now()
  local t = ffi.new("struct exact_timespec")
  ffi.C.clock_gettime(CLOCK_MONOTONIC, t)
  return tonumber(t.tv_sec) + tonumber(t.tv_nsec) * 1e-9
end

local method, path, body, ids_path, count
local targets, created, arrivals = {}, {}, {}
local reserved, sent, received, errors = 0, 0, 0, 0
local started

function init(args)
  method, path, body, ids_path = args[1], args[2], args[3], args[4]
  wrk.headers["Content-Type"] = "application/json"
  if path:find("{id}", 1, true) then
    for line in io.lines(ids_path) do
      targets[#targets + 1] = (path:gsub("{id}", line))
    end
    count = #targets
  else
    count = tonumber(args[5])
  end
end

-- wrk asks before every request on a connection (the first one too). Each request is
-- spoken for here, one at a time, so that none goes past the count; a connection that
-- finds them all taken is parked for longer than the run.
function delay()
  if reserved < count then
    reserved = reserved + 1
    started = started or now()
    return 0
  end
  return PARKED_MS
end

function request()
  if not started then  -- wrk checks the script once before connecting: build, don't count
    return wrk.format(method, targets[1] or path, nil, body)
  end
  sent = sent + 1
  return wrk.format(method, targets[sent] or path, nil, body)
end

function response(status, headers, body)
  received = received + 1
  arrivals[received] = string.format("%.6f", now())
  if status >= 300 then
    errors = errors + 1
  elseif #targets == 0 then
    created[#created + 1] = body:match('"id"%s*:%s*(%d+)')
  end
  if received == count then
    local elapsed = now() - started
    if #targets == 0 then
      local f = assert(io.open(ids_path, "w"))
      f:write(table.concat(created, "\n"), "\n")
      f:close()
    end
    local f = assert(io.open(ids_path .. ".times", "w"))
    f:write(string.format("%.6f", started), "\n", table.concat(arrivals, "\n"), "\n")
    f:close()
    io.write(string.format("exact: %d requests in %.6f s, %d errors\n", received, elapsed, errors))
    io.stdout:flush()
    wrk.thread:stop()
  end
end
