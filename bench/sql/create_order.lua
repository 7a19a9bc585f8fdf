-- wrk script for the create-order benchmark: a fresh Idempotency-Key per request.
-- BENCH_API_KEY and BENCH_SKUS come from the environment.
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  key = os.getenv("BENCH_API_KEY")
  skus = tonumber(os.getenv("BENCH_SKUS") or "1000")
  prefix = string.format("wrk-%d-%d-", os.time(), tid)
  math.randomseed(os.time() * 100 + tid)
  n = 0
  non201 = 0
end
function request()
  n = n + 1
  local body = string.format('{"customer_id":"cust-%d","currency":"EUR","items":[{"sku":"SKU-%d","quantity":1,"unit_price_cents":1250}]}',
    math.random(1, 100000), math.random(1, skus))
  return wrk.format("POST", "/v1/orders", {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = prefix .. n}, body)
end
function response(status, headers, body)
  if status ~= 201 then non201 = non201 + 1 end
end
