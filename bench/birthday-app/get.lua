-- GET /hello/<user> for random saved users.
package.path = os.getenv("BENCH_DIR") .. "/?.lua;" .. package.path
local u = require("users")
request = function()
  return wrk.format("GET", "/hello/" .. u.name(math.random(0, u.users - 1)))
end
