local products = ids("products")
request = function()
  return wrk.format("GET", "/products/" .. products[math.random(#products)])
end
