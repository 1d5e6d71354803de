#pragma once

// Passive outlier detection as Envoy's: each request's result is reported for its host. The
// consecutive_5xx and consecutive_gateway_failure detectors look at every result; the
// success_rate and failure_percentage detectors at each host's requests and 5xx of the last
// `interval` (hosts with enough requests, when enough hosts have them). Locally originated
// errors (connect failures, resets, timeouts) count as 503 and 504 responses, unless
// split_external_local_origin_errors gives them detectors of their own: consecutive local
// origin failures, and the two interval detectors over attempts and local-origin failures. A host they single out
// is ejected (if the enforcing_* percentage draws it) for base_ejection_time times its
// multiplier, the number of its ejections less the intervals it then stayed in for (capped at
// max_ejection_time), unless max_ejection_percent of the hosts are
// already out (one ejection is always allowed). Hosts return lazily, when a pick or report sees
// their time has passed; the interval's evaluation is run by the first report after it ends
// (Envoy's timer, driven by traffic: with no traffic there is nothing to evaluate). State
// lives in atomics on the hosts and the detector, shared by all workers without locks.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "sidecar/config/cluster.h"
#include "sidecar/stats.h"

namespace meshpilot::sidecar::upstream {

struct Host;

// One host's detector state.
struct OutlierState {
  std::atomic<uint32_t> consecutive_5xx{0};
  std::atomic<uint32_t> consecutive_gateway_failure{0};
  std::atomic<uint32_t> times_ejected{0};
  std::atomic<int64_t> ejected_until{0};  // steady_clock nanoseconds; 0: not ejected
  std::atomic<int64_t> in_since{0};       // when its last ejection ended; 0: never ejected
  // This interval's requests (high 32 bits) and 5xx (low 32 bits), read and reset together.
  std::atomic<uint64_t> interval_counts{0};
  // With split_external_local_origin_errors: the same for attempts and local-origin failures.
  std::atomic<uint32_t> consecutive_local_origin_failure{0};
  std::atomic<uint64_t> local_interval_counts{0};
};

class OutlierDetector {
 public:
  using Clock = std::chrono::steady_clock;
  // Where the success-rate and failure-percentage detectors of one kind of result (external
  // or local origin) find their counts, settings and stats.
  struct IntervalDetectors;

  // `hosts` outlive the detector (the load balancer owns both); `stats` may be null.
  OutlierDetector(const config::OutlierDetection& config, std::vector<const Host*> hosts,
                  std::shared_ptr<ClusterStats> stats);

  // A response from `host` with `status`. `random` decides the enforcing_* percentages.
  void Report(const Host& host, unsigned status, uint64_t random, Clock::time_point now) const;
  // A locally originated error at `host`: a connect failure or a reset, or a timeout.
  void ReportLocalOrigin(const Host& host, bool timeout, uint64_t random,
                         Clock::time_point now) const;
  // A connection to `host` that will carry no answer to report (the TCP proxy's): a success
  // of local origin (Envoy's LOCAL_ORIGIN_CONNECT_SUCCESS_FINAL; a 200 when not split).
  void ReportConnected(const Host& host, uint64_t random, Clock::time_point now) const;

  // Whether `host` is ejected at `now`; a host whose time has passed returns here.
  bool Ejected(const Host& host, Clock::time_point now) const;

  // Whether picks should skip ejected hosts: some are, and at least healthy_panic_threshold
  // (Envoy's default: 50%) of the hosts are not; below it (panic) all hosts take traffic.
  // Returns the hosts whose time has passed first.
  bool SkipEjected(Clock::time_point now) const;

  uint32_t ejected_count() const { return ejected_.load(std::memory_order_relaxed); }
  double healthy_panic_threshold() const { return config_.healthy_panic_threshold; }

 private:
  // true if the host was ejected.
  bool TryEject(const Host& host, uint32_t enforcing, uint64_t random, Clock::time_point now) const;
  // The host could be reached: with split errors, the local-origin success.
  void CountReached(OutlierState& state) const;
  // Ends the interval when `now` is past it, evaluating it.
  void AdvanceInterval(uint64_t random, Clock::time_point now) const;
  // The success-rate and failure-percentage detectors over the interval that ended.
  void EvaluateInterval(const IntervalDetectors& detectors, uint64_t random,
                        Clock::time_point now) const;
  // `host` is back in from `ejected_until` on.
  void Return(const Host& host, int64_t ejected_until) const;
  // At the end of each interval since `interval_end`, a host that was in for all of that
  // interval has its ejection multiplier lowered by one (Envoy's decay).
  void DecayEjections(int64_t interval_end, Clock::time_point now) const;

  const config::OutlierDetection config_;
  const std::vector<const Host*> hosts_;
  const std::shared_ptr<ClusterStats> stats_;
  mutable std::atomic<uint32_t> ejected_{0};
  // No host returns before this (steady_clock nanoseconds): until then a pick need not look.
  mutable std::atomic<int64_t> earliest_return_{INT64_MAX};
  // When the current interval ends (steady_clock nanoseconds); 0: before the first report.
  mutable std::atomic<int64_t> interval_end_{0};
};

}  // namespace meshpilot::sidecar::upstream
