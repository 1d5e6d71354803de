-- wrk's summary as one JSON line: requests/s over the whole run and latency percentiles from
-- its histogram (microseconds), in the shape h2load_report.py prints.
done = function(summary, latency, requests)
  local errors = summary.errors
  local failed = errors.connect + errors.read + errors.write + errors.status + errors.timeout
  io.write(string.format(
    '{"requests": %d, "failed": %d, "rps": %.1f, "p50_us": %d, "p99_us": %d, "p999_us": %d}\n',
    summary.requests, failed, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
