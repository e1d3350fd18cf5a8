-- GET a path with a session cookie, rotating through many sessions.
--
--   wrk ... -s cookies.lua URL -- TOKENS_FILE THREADS [COOKIE_NAME] [PATH] [once]
--
-- TOKENS_FILE holds one signed token per line. Thread k of THREADS takes lines k, k+THREADS,
-- ... so no two threads share a session (a cold session is looked up once, not raced).
-- Each thread cycles through its slice in order, one request per connection turn. With
-- `once`, a thread stops after one pass over its slice (every request hits a distinct
-- session: the all-cold mode); then only wrk's latency figures are meaningful, not its
-- requests per second.
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
local report = require("report")

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local reqs = {}
local i = 0
local answered = 0
local once = false

-- Once mode: count answers and stop the thread after one pass (wrk only calls
-- `response` when the script defines it, which slows it down a little).
local function stop_after_pass(status, headers, body)
  answered = answered + 1
  if answered >= #reqs then
    wrk.thread:stop()
  end
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  local name = args[3] or "session"
  local target = args[4] or "/api/v1/auth/me"
  once = args[5] == "once"
  local k = 0
  for line in io.lines(path) do
    if #line > 0 then
      if k % nthreads == tid - 1 then
        reqs[#reqs + 1] = wrk.format("GET", target, { ["Cookie"] = name .. "=" .. line })
      end
      k = k + 1
    end
  end
  if #reqs == 0 then
    error("no tokens for thread " .. tid .. " in " .. path)
  end
  if once then
    response = stop_after_pass
  end
end

function request()
  i = i + 1
  if i > #reqs then
    i = once and #reqs or 1
  end
  return reqs[i]
end

done = report.done
