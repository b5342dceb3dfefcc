-- Shared by the birthday-app wrk scripts: user N's name, in letters only.
local function name(i)
  local s = ""
  repeat
    s = s .. string.char(97 + i % 26)
    i = math.floor(i / 26)
  until i == 0
  return "User" .. s
end

local users = tonumber(os.getenv("BENCH_USERS") or "1000")
return { name = name, users = users }
