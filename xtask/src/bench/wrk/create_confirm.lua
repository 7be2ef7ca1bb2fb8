-- Phase create_confirm: place an order, then confirm it, on each connection (one wrk
-- thread per connection, so this thread's state is the connection's).
-- This thread's one connection: the order it placed and has yet to confirm.
local placed = nil
request = function()
  if placed then
    return wrk.format("POST", "/commands/orders/" .. placed .. "/confirm", json,
      '{"payment_token":"tok_visa"}')
  end
  return wrk.format("POST", "/commands/orders", json, new_order())
end
response = function(status, headers, body)
  if placed then
    if status == 202 then flows = flows + 1 end
    placed = nil
  elseif status == 202 then
    placed = body:match('"order_id":"([^"]+)"')
  end
end
