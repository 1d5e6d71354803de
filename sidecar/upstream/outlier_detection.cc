#include "sidecar/upstream/outlier_detection.h"

#include <algorithm>
#include <cmath>

#include "sidecar/upstream/load_balancer.h"

namespace meshpilot::sidecar::upstream {
namespace {

int64_t Nanos(OutlierDetector::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

bool IsGatewayFailure(unsigned status) { return status >= 502 && status <= 504; }

constexpr uint64_t kOneRequest = uint64_t{1} << 32;

// An interval's volume at one host.
struct HostVolume {
  const Host* host;
  double requests;
  double failures;
};

}  // namespace

struct OutlierDetector::IntervalDetectors {
  std::atomic<uint64_t> OutlierState::*counts;
  uint32_t config::OutlierDetection::*enforcing_success_rate;
  uint32_t config::OutlierDetection::*enforcing_failure_percentage;
  std::atomic<uint64_t> ClusterStats::*detected_success_rate;
  std::atomic<uint64_t> ClusterStats::*enforced_success_rate;
  std::atomic<uint64_t> ClusterStats::*detected_failure_percentage;
  std::atomic<uint64_t> ClusterStats::*enforced_failure_percentage;
};

namespace {

constexpr OutlierDetector::IntervalDetectors kExternal = {
    &OutlierState::interval_counts,
    &config::OutlierDetection::enforcing_success_rate,
    &config::OutlierDetection::enforcing_failure_percentage,
    &ClusterStats::outlier_detection_ejections_detected_success_rate,
    &ClusterStats::outlier_detection_ejections_enforced_success_rate,
    &ClusterStats::outlier_detection_ejections_detected_failure_percentage,
    &ClusterStats::outlier_detection_ejections_enforced_failure_percentage,
};
constexpr OutlierDetector::IntervalDetectors kLocalOrigin = {
    &OutlierState::local_interval_counts,
    &config::OutlierDetection::enforcing_local_origin_success_rate,
    &config::OutlierDetection::enforcing_failure_percentage_local_origin,
    &ClusterStats::outlier_detection_ejections_detected_local_origin_success_rate,
    &ClusterStats::outlier_detection_ejections_enforced_local_origin_success_rate,
    &ClusterStats::outlier_detection_ejections_detected_local_origin_failure_percentage,
    &ClusterStats::outlier_detection_ejections_enforced_local_origin_failure_percentage,
};

}  // namespace

OutlierDetector::OutlierDetector(const config::OutlierDetection& config,
                                 std::vector<const Host*> hosts,
                                 std::shared_ptr<ClusterStats> stats)
    : config_(config), hosts_(std::move(hosts)), stats_(std::move(stats)) {}

void OutlierDetector::AdvanceInterval(uint64_t random, Clock::time_point now) const {
  int64_t interval_end = interval_end_.load(std::memory_order_acquire);
  const int64_t next_end = Nanos(now + config_.interval);
  if (interval_end == 0) {
    interval_end_.compare_exchange_strong(interval_end, next_end, std::memory_order_acq_rel);
  } else if (Nanos(now) >= interval_end &&
             interval_end_.compare_exchange_strong(interval_end, next_end,
                                                   std::memory_order_acq_rel)) {
    // This thread ended the interval (or several, with no report in between).
    DecayEjections(interval_end, now);
    EvaluateInterval(kExternal, random, now);
    if (config_.split_external_local_origin_errors) {
      EvaluateInterval(kLocalOrigin, Mix64(random), now);  // draws apart from the external ones
    }
  }
}

void OutlierDetector::DecayEjections(int64_t interval_end, Clock::time_point now) const {
  const int64_t interval = std::max<int64_t>(std::chrono::nanoseconds(config_.interval).count(), 1);
  // The intervals that ended: at interval_end, interval_end + interval, ... up to now.
  const int64_t ended = 1 + (Nanos(now) - interval_end) / interval;
  for (const Host* host : hosts_) {
    if (Ejected(*host, now)) continue;
    OutlierState& state = host->outlier;
    // Those it was in for from start to end: the first one starts at or after in_since.
    const int64_t first_start = interval_end - interval;
    const int64_t in_since = state.in_since.load(std::memory_order_relaxed);
    const int64_t skipped =
        in_since <= first_start ? 0 : (in_since - first_start + interval - 1) / interval;
    const int64_t healthy = ended - std::min(ended, skipped);
    uint32_t times = state.times_ejected.load(std::memory_order_relaxed);
    while (times > 0 && healthy > 0 &&
           !state.times_ejected.compare_exchange_weak(
               times, static_cast<uint32_t>(times - std::min<int64_t>(times, healthy)),
               std::memory_order_relaxed)) {
    }
  }
}

void OutlierDetector::ReportLocalOrigin(const Host& host, bool timeout, uint64_t random,
                                        Clock::time_point now) const {
  if (!config_.split_external_local_origin_errors) {
    Report(host, timeout ? 504 : 503, random, now);  // Envoy's mapping
    return;
  }
  OutlierState& state = host.outlier;
  state.local_interval_counts.fetch_add(kOneRequest | 1, std::memory_order_relaxed);
  AdvanceInterval(random, now);
  if (Ejected(host, now)) return;
  if (state.consecutive_local_origin_failure.fetch_add(1, std::memory_order_relaxed) + 1 !=
      config_.consecutive_local_origin_failure) {
    return;
  }
  if (stats_ != nullptr) {
    stats_->outlier_detection_ejections_detected_consecutive_local_origin_failure.fetch_add(
        1, std::memory_order_relaxed);
  }
  if (TryEject(host, config_.enforcing_consecutive_local_origin_failure, random, now) &&
      stats_ != nullptr) {
    stats_->outlier_detection_ejections_enforced_consecutive_local_origin_failure.fetch_add(
        1, std::memory_order_relaxed);
  }
}

void OutlierDetector::CountReached(OutlierState& state) const {
  if (!config_.split_external_local_origin_errors) return;
  state.local_interval_counts.fetch_add(kOneRequest, std::memory_order_relaxed);
  state.consecutive_local_origin_failure.store(0, std::memory_order_relaxed);
}

void OutlierDetector::ReportConnected(const Host& host, uint64_t random,
                                      Clock::time_point now) const {
  if (!config_.split_external_local_origin_errors) {
    Report(host, 200, random, now);
    return;
  }
  CountReached(host.outlier);
  AdvanceInterval(random, now);
}

void OutlierDetector::Report(const Host& host, unsigned status, uint64_t random,
                             Clock::time_point now) const {
  OutlierState& state = host.outlier;
  CountReached(state);  // an answer: as far as the host's connection goes, a success
  state.interval_counts.fetch_add(kOneRequest | (status >= 500 ? 1 : 0), std::memory_order_relaxed);
  AdvanceInterval(random, now);
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

void OutlierDetector::EvaluateInterval(const IntervalDetectors& detectors, uint64_t random,
                                       Clock::time_point now) const {
  std::vector<HostVolume> volumes;
  volumes.reserve(hosts_.size());
  for (const Host* host : hosts_) {
    const uint64_t counts = (host->outlier.*detectors.counts).exchange(0, std::memory_order_acq_rel);
    if (Ejected(*host, now)) continue;  // Envoy leaves ejected hosts out
    volumes.push_back({host, static_cast<double>(counts >> 32),
                       static_cast<double>(counts & 0xffffffff)});
  }
  // Each enforcing_* decision draws its own chance, as Envoy's (a fresh random number each):
  // the success rate's of host i is draw 2i of a splitmix64 sequence seeded by `random`, the
  // failure percentage's draw 2i + 1.
  auto draw = [random](uint64_t n) { return Mix64(random + n * kGoldenGamma); };

  // Success rate: below the mean by more than success_rate_stdev_factor / 1000 deviations.
  std::vector<size_t> sr_hosts;
  for (size_t i = 0; i < volumes.size(); ++i) {
    if (volumes[i].requests >= config_.success_rate_request_volume) sr_hosts.push_back(i);
  }
  if (!sr_hosts.empty() && sr_hosts.size() >= config_.success_rate_minimum_hosts) {
    auto rate = [&](size_t i) {
      return 100.0 * (volumes[i].requests - volumes[i].failures) / volumes[i].requests;
    };
    double sum = 0;
    for (size_t i : sr_hosts) sum += rate(i);
    const double mean = sum / static_cast<double>(sr_hosts.size());
    double variance = 0;
    for (size_t i : sr_hosts) variance += (rate(i) - mean) * (rate(i) - mean);
    variance /= static_cast<double>(sr_hosts.size());
    const double threshold =
        mean - std::sqrt(variance) * (config_.success_rate_stdev_factor / 1000.0);
    for (size_t i : sr_hosts) {
      if (rate(i) >= threshold) continue;
      if (stats_ != nullptr) {
        ((*stats_).*detectors.detected_success_rate).fetch_add(1, std::memory_order_relaxed);
      }
      if (TryEject(*volumes[i].host, config_.*detectors.enforcing_success_rate, draw(2 * i),
                   now) &&
          stats_ != nullptr) {
        ((*stats_).*detectors.enforced_success_rate).fetch_add(1, std::memory_order_relaxed);
      }
    }
  }

  // Failure percentage: at or over failure_percentage_threshold.
  std::vector<size_t> fp_hosts;
  for (size_t i = 0; i < volumes.size(); ++i) {
    if (volumes[i].requests >= config_.failure_percentage_request_volume) fp_hosts.push_back(i);
  }
  if (!fp_hosts.empty() && fp_hosts.size() >= config_.failure_percentage_minimum_hosts) {
    for (size_t i : fp_hosts) {
      if (100.0 * volumes[i].failures / volumes[i].requests < config_.failure_percentage_threshold) {
        continue;
      }
      if (stats_ != nullptr) {
        ((*stats_).*detectors.detected_failure_percentage).fetch_add(1, std::memory_order_relaxed);
      }
      if (TryEject(*volumes[i].host, config_.*detectors.enforcing_failure_percentage,
                   draw(2 * i + 1), now) &&
          stats_ != nullptr) {
        ((*stats_).*detectors.enforced_failure_percentage).fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
}

bool OutlierDetector::TryEject(const Host& host, uint32_t enforcing, uint64_t random,
                               Clock::time_point now) const {
  if (random % 100 >= enforcing) return false;
  // max_ejection_percent, as Envoy: the first ejection is always allowed.
  uint32_t ejected = ejected_.load(std::memory_order_relaxed);
  do {
    if (ejected > 0 &&
        uint64_t{ejected + 1} * 100 > uint64_t{config_.max_ejection_percent} * hosts_.size()) {
      return false;
    }
  } while (!ejected_.compare_exchange_weak(ejected, ejected + 1, std::memory_order_acq_rel));
  OutlierState& state = host.outlier;
  // The multiplier grows while base_ejection_time times it is under max_ejection_time.
  const auto longest = std::max(config_.max_ejection_time, config_.base_ejection_time);
  const uint32_t before = state.times_ejected.load(std::memory_order_relaxed);
  const uint32_t times = config_.base_ejection_time * before < longest ? before + 1 : before;
  const auto duration = std::min(config_.base_ejection_time * times, longest);
  const int64_t until = Nanos(now + duration);
  int64_t expected = 0;
  if (!state.ejected_until.compare_exchange_strong(expected, until, std::memory_order_acq_rel)) {
    ejected_.fetch_sub(1, std::memory_order_relaxed);  // another thread ejected it first
    return false;
  }
  state.times_ejected.store(times, std::memory_order_relaxed);
  state.consecutive_5xx.store(0, std::memory_order_relaxed);
  state.consecutive_gateway_failure.store(0, std::memory_order_relaxed);
  state.consecutive_local_origin_failure.store(0, std::memory_order_relaxed);
  int64_t earliest = earliest_return_.load(std::memory_order_relaxed);
  while (until < earliest &&
         !earliest_return_.compare_exchange_weak(earliest, until, std::memory_order_acq_rel)) {
  }
  if (stats_ != nullptr) {
    stats_->outlier_detection_ejections_enforced_total.fetch_add(1, std::memory_order_relaxed);
    stats_->outlier_detection_ejections_active.fetch_add(1, std::memory_order_relaxed);
  }
  return true;
}

void OutlierDetector::Return(const Host& host, int64_t ejected_until) const {
  host.outlier.in_since.store(ejected_until, std::memory_order_relaxed);
  host.outlier.consecutive_5xx.store(0, std::memory_order_relaxed);
  host.outlier.consecutive_gateway_failure.store(0, std::memory_order_relaxed);
  host.outlier.consecutive_local_origin_failure.store(0, std::memory_order_relaxed);
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
    Return(host, until);
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
