-- Phase create: POST /commands/orders of a random new order.
request = function()
  return wrk.format("POST", "/commands/orders", json, new_order())
end
