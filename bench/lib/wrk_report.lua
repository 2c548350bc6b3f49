-- wrk script: at the end of a run, print one machine-readable line with exact counts and
-- latency percentiles (microseconds), prefixed by "WRKJSON " (read by benchlib.py wrk-record).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "bytes": %d, "duration_us": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "status_errors": %d, "timeout_errors": %d, ' ..
    '"lat_mean_us": %.2f, "lat_max_us": %d, "lat_p50_us": %d, "lat_p90_us": %d, "lat_p99_us": %d, "lat_p999_us": %d}\n',
    summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
