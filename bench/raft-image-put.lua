-- wrk script for bench/raft-image.sh: 100 lines of 10 random doubles per request (segments that
-- do not compress), timestamps in ms unique per thread and request.
local threads = {}
function setup(thread) thread:set("id", #threads + 1); table.insert(threads, thread) end
function init(args)
  counter = 0
  base = id * 1000000000
  math.randomseed(id)
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Basic cm9vdDpyb290"
end
function request()
  counter = counter + 1
  local ts = base + counter
  local lines = {}
  for line = 0, 99 do
    local f = {}
    for k = 0, 9 do f[#f + 1] = "f" .. k .. "=" .. string.format("%.17g", math.random()) end
    lines[#lines + 1] = "m,device=d" .. line .. " " .. table.concat(f, ",") .. " " .. ts
  end
  return wrk.format(nil, nil, nil, table.concat(lines, "\n"))
end
