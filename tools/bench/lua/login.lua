-- POST /api/v1/auth/login, rotating through many accounts (the login storm).
--
--   wrk ... -s login.lua URL -- EMAIL_PREFIX USERS PASSWORD
--
-- Accounts are EMAIL_PREFIX0@bench.test ... EMAIL_PREFIX<USERS-1>@bench.test, all with
-- PASSWORD. Each thread starts at a different account.
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
local report = require("report")

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
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

done = report.done
