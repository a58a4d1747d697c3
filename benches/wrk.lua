-- wrk's summary as one line benches/wrk.sh can read: requests, req/s, latency p50, p99,
-- p99.9 (microseconds), errors. With WRK_MIX set (space-separated paths), requests are a mix: manifests by
-- tag and by digest (hot), and a warm blob, picked at random (repeat a path to weigh it).
local mix = os.getenv("WRK_MIX")
local paths = {}
if mix then
  for p in string.gmatch(mix, "[^ ]+") do table.insert(paths, p) end
end

request = function()
  if #paths == 0 then return wrk.format(nil) end
  return wrk.format("GET", paths[math.random(#paths)])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.0f %d %d %d %d\n", summary.requests,
    summary.requests / (summary.duration / 1e6), latency:percentile(50),
    latency:percentile(99), latency:percentile(99.9),
    e.connect + e.read + e.write + e.status + e.timeout))
end
