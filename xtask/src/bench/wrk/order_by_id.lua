local orders = ids("orders")
request = function()
  return wrk.format("GET", "/queries/orders/" .. orders[math.random(#orders)])
end
