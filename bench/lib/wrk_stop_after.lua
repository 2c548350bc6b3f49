-- wrk script: end wrk once this thread has seen STOP_AFTER responses (environment variable;
-- use with -t1), so a measurement covers a fixed number of requests rather than a fixed
-- time. wrk's own summary would only come at the end of its -d duration, so this prints
-- "STOPPED_AFTER N" and exits at once. Up to one request per other connection may still be
-- in flight then (at most -c minus one more served than counted).
local limit = tonumber(os.getenv("STOP_AFTER") or "0")
local seen = 0
response = function(status, headers, body)
  seen = seen + 1
  if limit > 0 and seen >= limit then
    io.write(string.format("STOPPED_AFTER %d\n", seen))
    io.flush()
    os.exit(0)
  end
end
