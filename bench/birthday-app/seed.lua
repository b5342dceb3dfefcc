-- Saves users 0..BENCH_USERS-1 in order (each thread walks the whole list).
package.path = os.getenv("BENCH_DIR") .. "/?.lua;" .. package.path
local u = require("users")
local i = -1
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = (i + 1) % u.users
  return wrk.format("PUT", "/hello/" .. u.name(i), nil, '{"dateOfBirth":"1990-06-15"}')
end
