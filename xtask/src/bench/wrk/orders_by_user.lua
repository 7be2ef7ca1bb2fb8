-- Phase orders_by_user: GET /queries/orders?user_id= of a random seeded user.
local users = ids("users")
request = function()
  return wrk.format("GET", "/queries/orders?user_id=" .. users[math.random(#users)], auth)
end
