-- wrk script: BATCH points per request (1, or lines of 10 float fields; "s256" is one point
-- with a 256-byte string value, etcd's benchmark), timestamps unique across runs, threads and
-- requests. Arguments: wrk … -s consensus-put.lua URL -- RUN BATCH
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  etcd = args[2] == "s256"
  batch = tonumber(args[2]) or 1
  value = string.rep("x", 256)
  base = ((tonumber(args[1]) or 0) * 100 + id) * 1000000000
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Basic cm9vdDpyb290"
  wrk.headers["Content-Type"] = "text/plain"
  fields = {}
  for f = 0, 9 do fields[#fields + 1] = "f" .. f .. "=" .. (20 + f) .. ".5" end
  fields = table.concat(fields, ",")
end

function request()
  counter = counter + 1
  local ts = base + counter
  if etcd then
    return wrk.format(nil, nil, nil, 'kv v="' .. value .. '" ' .. ts)
  end
  if batch == 1 then
    return wrk.format(nil, nil, nil, "kv v=" .. (counter % 1000) .. ".25 " .. ts)
  end
  local lines = {}
  for line = 0, batch / 10 - 1 do
    lines[#lines + 1] = "m,device=d" .. line .. " " .. fields .. " " .. ts
  end
  return wrk.format(nil, nil, nil, table.concat(lines, "\n"))
end
