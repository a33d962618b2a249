-- wrk script: one line-protocol point per request, a 256-byte string value and a
-- timestamp unique across runs, threads and requests (etcd's benchmark: 256-byte values).
-- The run's number comes as the script argument: wrk … -s raft-put.lua URL -- RUN
local threads = {}
local value = string.rep("x", 256)

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  base = ((tonumber(args[1]) or 0) * 100 + id) * 1000000000
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Basic cm9vdDpyb290"
  wrk.headers["Content-Type"] = "text/plain"
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, 'kv v="' .. value .. '" ' .. tostring(base + counter))
end
