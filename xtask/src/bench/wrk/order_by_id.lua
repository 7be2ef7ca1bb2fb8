-- Phase order_by_id: GET /queries/orders/{id} of a random seeded order.
local orders = ids("orders")
request = function()
  return wrk.format("GET", "/queries/orders/" .. orders[math.random(#orders)], auth)
end
