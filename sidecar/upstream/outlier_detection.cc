#include "sidecar/upstream/outlier_detection.h"

#include <algorithm>

#include "sidecar/upstream/load_balancer.h"

namespace meshpilot::sidecar::upstream {
namespace {

int64_t Nanos(OutlierDetector::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

bool IsGatewayFailure(unsigned status) { return status >= 502 && status <= 504; }

}  // namespace

OutlierDetector::OutlierDetector(const config::OutlierDetection& config,
                                 std::vector<const Host*> hosts,
                                 std::shared_ptr<ClusterStats> stats)
    : config_(config), hosts_(std::move(hosts)), stats_(std::move(stats)) {}

void OutlierDetector::Report(const Host& host, unsigned status, uint64_t random,
                             Clock::time_point now) const {
  OutlierState& state = host.outlier;
  if (status < 500) {
    state.consecutive_5xx.store(0, std::memory_order_relaxed);
    state.consecutive_gateway_failure.store(0, std::memory_order_relaxed);
    return;
  }
  if (Ejected(host, now)) return;  // traffic in panic mode: already out
  // Exactly at the threshold: one thread sees it.
  if (IsGatewayFailure(status)) {
    if (state.consecutive_gateway_failure.fetch_add(1, std::memory_order_relaxed) + 1 ==
        config_.consecutive_gateway_failure) {
      TryEject(host, config_.enforcing_consecutive_gateway_failure, random, now);
    }
  } else {
    state.consecutive_gateway_failure.store(0, std::memory_order_relaxed);
  }
  if (state.consecutive_5xx.fetch_add(1, std::memory_order_relaxed) + 1 ==
      config_.consecutive_5xx) {
    TryEject(host, config_.enforcing_consecutive_5xx, random >> 32, now);
  }
}

void OutlierDetector::TryEject(const Host& host, uint32_t enforcing, uint64_t random,
                               Clock::time_point now) const {
  if (random % 100 >= enforcing) return;
  // max_ejection_percent, as Envoy: the first ejection is always allowed.
  uint32_t ejected = ejected_.load(std::memory_order_relaxed);
  do {
    if (ejected > 0 &&
        uint64_t{ejected + 1} * 100 > uint64_t{config_.max_ejection_percent} * hosts_.size()) {
      return;
    }
  } while (!ejected_.compare_exchange_weak(ejected, ejected + 1, std::memory_order_acq_rel));
  OutlierState& state = host.outlier;
  const uint32_t times = state.times_ejected.load(std::memory_order_relaxed) + 1;
  const auto duration = std::min(config_.base_ejection_time * times,
                                 std::max(config_.max_ejection_time, config_.base_ejection_time));
  const int64_t until = Nanos(now + duration);
  int64_t expected = 0;
  if (!state.ejected_until.compare_exchange_strong(expected, until, std::memory_order_acq_rel)) {
    ejected_.fetch_sub(1, std::memory_order_relaxed);  // another thread ejected it first
    return;
  }
  state.times_ejected.fetch_add(1, std::memory_order_relaxed);
  state.consecutive_5xx.store(0, std::memory_order_relaxed);
  state.consecutive_gateway_failure.store(0, std::memory_order_relaxed);
  int64_t earliest = earliest_return_.load(std::memory_order_relaxed);
  while (until < earliest &&
         !earliest_return_.compare_exchange_weak(earliest, until, std::memory_order_acq_rel)) {
  }
  if (stats_ != nullptr) {
    stats_->outlier_detection_ejections_enforced_total.fetch_add(1, std::memory_order_relaxed);
    stats_->outlier_detection_ejections_active.fetch_add(1, std::memory_order_relaxed);
  }
}

void OutlierDetector::Return(const Host& host) const {
  host.outlier.consecutive_5xx.store(0, std::memory_order_relaxed);
  host.outlier.consecutive_gateway_failure.store(0, std::memory_order_relaxed);
  ejected_.fetch_sub(1, std::memory_order_acq_rel);
  if (stats_ != nullptr) {
    stats_->outlier_detection_ejections_active.fetch_sub(1, std::memory_order_relaxed);
  }
}

bool OutlierDetector::Ejected(const Host& host, Clock::time_point now) const {
  int64_t until = host.outlier.ejected_until.load(std::memory_order_acquire);
  if (until == 0) return false;
  if (Nanos(now) < until) return true;
  // Its time has passed: the thread that clears it does the bookkeeping.
  if (host.outlier.ejected_until.compare_exchange_strong(until, 0, std::memory_order_acq_rel)) {
    Return(host);
  }
  return false;
}

bool OutlierDetector::SkipEjected(Clock::time_point now) const {
  if (ejected_.load(std::memory_order_acquire) == 0) return false;
  int64_t earliest = earliest_return_.load(std::memory_order_acquire);
  if (Nanos(now) >= earliest) {
    // Sweep. An ejection racing with it lowers earliest_return_ itself, and then the
    // compare-exchange below leaves its value alone.
    int64_t next = INT64_MAX;
    for (const Host* host : hosts_) {
      if (!Ejected(*host, now)) continue;
      const int64_t until = host->outlier.ejected_until.load(std::memory_order_acquire);
      if (until != 0) next = std::min(next, until);
    }
    earliest_return_.compare_exchange_strong(earliest, next, std::memory_order_acq_rel);
  }
  const uint64_t ejected = std::min<uint64_t>(ejected_.load(std::memory_order_acquire),
                                              hosts_.size());
  return ejected > 0 && static_cast<double>(hosts_.size() - ejected) * 100 >=
                            config_.healthy_panic_threshold * static_cast<double>(hosts_.size());
}

}  // namespace meshpilot::sidecar::upstream
