-- POST /api/v1/auth/login, rotating through many accounts (the login storm).
--
--   wrk ... -s login.lua URL -- EMAIL_PREFIX USERS PASSWORD
--
-- Accounts are EMAIL_PREFIX0@bench.test ... EMAIL_PREFIX<USERS-1>@bench.test, all with
-- PASSWORD. Each thread starts at a different account.
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
local report = require("report")

local threads = 0
local thread_list = {}
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
  thread_list[threads] = thread
end

local reqs = {}
local i = 0

function init(args)
  local prefix, users, password = args[1], tonumber(args[2]), args[3]
  local headers = { ["Content-Type"] = "application/json" }
  for n = 0, users - 1 do
    local body = string.format('{"email":"%s%d@bench.test","password":"%s"}', prefix, n, password)
    reqs[#reqs + 1] = wrk.format("POST", "/api/v1/auth/login", headers, body)
  end
  i = (tid * 7919) % #reqs
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end

-- Answers other than 2xx, by status ("503:4,500:1"), so the driver can tell load
-- shedding (503 with Retry-After) from wrong answers.
local counts = {}
function response(status, headers, body)
  if status < 200 or status > 299 then
    counts[status] = (counts[status] or 0) + 1
    local parts = {}
    for code, n in pairs(counts) do
      parts[#parts + 1] = code .. ":" .. n
    end
    non2xx = table.concat(parts, ",")
  end
end

function done(summary, latency, requests)
  report.done(summary, latency, requests)
  for _, thread in ipairs(thread_list) do
    local c = thread:get("non2xx")
    if c then
      io.write("BENCH_STATUS " .. c .. "\n")
    end
  end
end
