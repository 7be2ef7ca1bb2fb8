-- Phase product_by_id: GET /products/{id} of a random seeded product.
local products = ids("products")
request = function()
  return wrk.format("GET", "/products/" .. products[math.random(#products)], auth)
end
