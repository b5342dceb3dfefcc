-- PUT /hello/<user> with random dates: a mix of new users and replacements.
package.path = os.getenv("BENCH_DIR") .. "/?.lua;" .. package.path
local u = require("users")
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = string.format('{"dateOfBirth":"19%02d-%02d-%02d"}', math.random(0, 99), math.random(1, 12), math.random(1, 28))
  return wrk.format("PUT", "/hello/" .. u.name(math.random(0, 10 * u.users)), nil, body)
end
