#pragma once

// Passive outlier detection as Envoy's consecutive_5xx and consecutive_gateway_failure
// detectors: each request's result is reported for its host; a host that reaches a threshold is
// ejected for base_ejection_time times the number of its ejections (capped at
// max_ejection_time), unless max_ejection_percent of the hosts are already out (one ejection is
// always allowed). Hosts return lazily, when a pick or report sees their time has passed. State
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
};

class OutlierDetector {
 public:
  using Clock = std::chrono::steady_clock;

  // `hosts` outlive the detector (the load balancer owns both); `stats` may be null.
  OutlierDetector(const config::OutlierDetection& config, std::vector<const Host*> hosts,
                  std::shared_ptr<ClusterStats> stats);

  // One request's result at `host`: its response status, or 503 for a connect failure or a
  // reset and 504 for a timeout (Envoy's mapping of local-origin errors). `random` decides the
  // enforcing_* percentages.
  void Report(const Host& host, unsigned status, uint64_t random, Clock::time_point now) const;

  // Whether `host` is ejected at `now`; a host whose time has passed returns here.
  bool Ejected(const Host& host, Clock::time_point now) const;

  // Whether picks should skip ejected hosts: some are, and at least healthy_panic_threshold
  // (Envoy's default: 50%) of the hosts are not; below it (panic) all hosts take traffic.
  // Returns the hosts whose time has passed first.
  bool SkipEjected(Clock::time_point now) const;

  uint32_t ejected_count() const { return ejected_.load(std::memory_order_relaxed); }

 private:
  void TryEject(const Host& host, uint32_t enforcing, uint64_t random, Clock::time_point now) const;
  void Return(const Host& host) const;

  const config::OutlierDetection config_;
  const std::vector<const Host*> hosts_;
  const std::shared_ptr<ClusterStats> stats_;
  mutable std::atomic<uint32_t> ejected_{0};
  // No host returns before this (steady_clock nanoseconds): until then a pick need not look.
  mutable std::atomic<int64_t> earliest_return_{INT64_MAX};
};

}  // namespace meshpilot::sidecar::upstream
