-- GET the forward-auth decision endpoint as Traefik or Caddy would ask it, with a session
-- cookie rotating through many sessions (the same rotation as cookies.lua).
--
--   wrk ... -s forward.lua URL -- TOKENS_FILE THREADS COOKIE_NAME PATH HOST [sign]
--
-- PATH is the decision endpoint (`/auth/api/v1/authz/forward-auth`); every request
-- describes `GET /app/page` on HOST (`X-Forwarded-Method/-Proto/-Host/-Uri`). With `sign`
-- every request names another host (`<n>.HOST`), so the assertion (reused per session and
-- audience) is signed afresh for every decision; the requests are then built one by one,
-- which costs wrk a little more CPU than the prepared requests of the steady mode.
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
local report = require("report")

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local cookies = {}
local reqs = {}
local i = 0
local n = 0
local sign = false
local path, host

local function headers(cookie, forwarded_host)
  return {
    ["Cookie"] = cookie,
    ["Accept"] = "application/json",
    ["X-Forwarded-Method"] = "GET",
    ["X-Forwarded-Proto"] = "http",
    ["X-Forwarded-Host"] = forwarded_host,
    ["X-Forwarded-Uri"] = "/app/page",
  }
end

function init(args)
  local file, nthreads, name = args[1], tonumber(args[2]), args[3]
  path, host, sign = args[4], args[5], args[6] == "sign"
  local k = 0
  for line in io.lines(file) do
    if #line > 0 then
      if k % nthreads == tid - 1 then
        cookies[#cookies + 1] = name .. "=" .. line
      end
      k = k + 1
    end
  end
  if #cookies == 0 then
    error("no tokens for thread " .. tid .. " in " .. file)
  end
  if not sign then
    for _, cookie in ipairs(cookies) do
      reqs[#reqs + 1] = wrk.format("GET", path, headers(cookie, host))
    end
  end
end

function request()
  i = i % #cookies + 1
  if sign then
    n = n + 1
    return wrk.format("GET", path, headers(cookies[i], string.format("t%d-%d.%s", tid, n, host)))
  end
  return reqs[i]
end

done = report.done
