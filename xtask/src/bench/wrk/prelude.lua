-- Written by `cargo xtask bench`; run by wrk.
local dir = [[{dir}]]
function ids(name)
  local all = {}
  for line in io.lines(dir .. "/" .. name .. ".txt") do all[#all + 1] = line end
  return all
end
-- Every request carries the bench's staff token (catalog, fulfilment, support), as a
-- client's would.
local bearer = "Bearer " .. ids("token")[1]
auth = { ["Authorization"] = bearer }
json = { ["Content-Type"] = "application/json", ["Authorization"] = bearer }
local users, products
function new_order()
  users = users or ids("users")
  products = products or ids("products")
  local lines, items, seen = math.random(math.min(3, #products)), {}, {}
  while #items < lines do
    local p = products[math.random(#products)]
    if not seen[p] then
      seen[p] = true
      items[#items + 1] = string.format('{"product_id":"%s","quantity":%d}', p, math.random(3))
    end
  end
  return string.format('{"user_id":"%s","items":[%s]}', users[math.random(#users)],
    table.concat(items, ","))
end
flows = 0
local threads, next_id = {}, 1
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  threads[#threads + 1] = thread
end
function init(args)
  math.randomseed(tid * 7919 + os.time())
end
function done(summary, latency, requests)
  local flows, e = 0, summary.errors
  for _, thread in ipairs(threads) do flows = flows + (thread:get("flows") or 0) end
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d status_errors=%d socket_errors=%d p50_us=%d p99_us=%d flows=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), flows))
end
