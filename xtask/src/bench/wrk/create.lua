request = function()
  return wrk.format("POST", "/commands/orders", json, new_order())
end
