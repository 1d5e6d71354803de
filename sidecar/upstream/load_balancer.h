#pragma once

// Load balancing over a cluster's healthy endpoints: ROUND_ROBIN (smooth weighted, from a
// precomputed wheel and one atomic counter), RANDOM (weighted), LEAST_REQUEST (power of
// `choice_count` weighted random choices, fewest active requests wins). Endpoints come in
// priority levels (Istio's locality failover); a pick first chooses a level by Envoy's priority
// load (PriorityLoadAt: the most preferred level takes all while it is healthy enough, and
// traffic spills over to the next as its hosts are ejected), then a locality in it by weight,
// then a host inside. RING_HASH places hosts on a ring, MAGLEV in a Maglev table
// (upstream/maglev.h), one per level, in proportion to their weight (locality weight
// included), and they pick by the request's hash; a request without one picks at random. With
// outlier detection, picks skip ejected hosts (unless too few are left: Envoy's panic mode).
// Slow start (ROUND_ROBIN, LEAST_REQUEST): a host that joined less than the window ago has its
// weight scaled down (config::SlowStart); the weights of the ramp are precomputed for a few
// dozen steps of time when the balancer is built, and a pick reads the step of its time (round
// robin then walks the ramp's weights by a golden-ratio sequence instead of a wheel, so a step
// costs O(hosts) to build). Immutable once built; the counters are atomics, so worker threads
// share it without locks.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <random>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "absl/functional/function_ref.h"
#include "sidecar/config/cluster.h"
#include "sidecar/stats.h"
#include "sidecar/upstream/outlier_detection.h"

namespace meshpilot::sidecar::upstream {

struct Host {
  boost::asio::ip::tcp::endpoint address;
  uint32_t weight = 1;
  std::string zone;
  std::string hostname;  // the endpoint's, for auto_host_rewrite
  uint32_t priority = 0;
  mutable std::atomic<int64_t> active_requests{0};
  mutable std::atomic<uint64_t> total_requests{0};
  mutable OutlierState outlier;
};

// A request to a host (none for ORIGINAL_DST), in its active_requests while it lives, which
// LEAST_REQUEST reads.
class HostRequest {
 public:
  explicit HostRequest(const Host* host) : host_(host) {
    if (host_ == nullptr) return;
    host_->active_requests.fetch_add(1, std::memory_order_relaxed);
    host_->total_requests.fetch_add(1, std::memory_order_relaxed);
  }
  ~HostRequest() {
    if (host_ != nullptr) host_->active_requests.fetch_sub(1, std::memory_order_relaxed);
  }
  HostRequest(const HostRequest&) = delete;
  HostRequest& operator=(const HostRequest&) = delete;

 private:
  const Host* host_;
};

using Clock = std::chrono::steady_clock;

// What slow start needs when a balancer is built: the cluster's config, the time, and when each
// endpoint joined the cluster (an endpoint not listed joins now).
struct SlowStartHosts {
  config::SlowStart config;
  Clock::time_point now;
  std::map<boost::asio::ip::tcp::endpoint, Clock::time_point> joined;
};

// A host's weight at `now` with slow start: weight * max(min_weight_percent, time_factor ^
// (1 / aggression)), time_factor = max(elapsed, 1 ms) / window; the weight itself once the
// window has passed.
double SlowStartWeight(uint32_t weight, const config::SlowStart& slow_start,
                       Clock::time_point joined, Clock::time_point now);

class LoadBalancer {
 public:
  // `localities` by priority, lowest first (config::EndpointSet).
  LoadBalancer(config::LbPolicy policy, uint32_t choice_count,
               const std::vector<config::Locality>& localities, uint64_t ring_size = 1024,
               const std::optional<config::OutlierDetection>& outlier_detection = std::nullopt,
               std::shared_ptr<ClusterStats> stats = nullptr,
               const std::optional<SlowStartHosts>& slow_start = std::nullopt,
               uint64_t max_ring_size = config::kMaxRingSize);
  ~LoadBalancer();
  LoadBalancer(const LoadBalancer&) = delete;
  LoadBalancer& operator=(const LoadBalancer&) = delete;

  // A host, avoiding `avoid` and ejected hosts when another one exists; null when there is no
  // host.
  // `hash` places the request on the ring of a RING_HASH balancer (ignored by the others).
  const Host* Pick(std::mt19937_64& rng, const Host* avoid = nullptr,
                   std::optional<uint64_t> hash = std::nullopt,
                   Clock::time_point now = Clock::now()) const;
  bool empty() const { return levels_.empty(); }
  std::vector<const Host*> Hosts() const;
  // Null without outlier_detection.
  const OutlierDetector* outlier() const { return outlier_.get(); }

  // Envoy's priority load (percent per priority level, summing to 100) and whether each level
  // is in panic, at `now`. A level's health is min(100, 1.4 * its hosts not ejected * 100 /
  // all its hosts, EDS-unhealthy ones included); each level takes its health's share of what
  // the levels before it left, scaled up when their health sums to less than 100; a level
  // whose not-ejected hosts are below healthy_panic_threshold is in panic (all its hosts take
  // traffic) unless the health sums to 100. Every level in panic: load by host count.
  struct PriorityLoad {
    std::vector<uint32_t> load;
    std::vector<bool> panic;
  };
  PriorityLoad PriorityLoadAt(Clock::time_point now) const;

 private:
  class Level;  // one priority's localities, ring or table, and schedules

  std::vector<std::unique_ptr<Level>> levels_;
  std::unique_ptr<OutlierDetector> outlier_;
};

// Smooth weighted round-robin order (nginx's), one full cycle, scaled down when the weights
// would make it longer than `max_length`.
std::vector<uint32_t> SmoothWeightedOrder(std::vector<uint64_t> weights, size_t max_length = 4096);

// An address as Envoy writes one (Address::asString): "IP:PORT", "[IPv6]:PORT".
std::string AddressString(const boost::asio::ip::tcp::endpoint& endpoint);

// xxHash64 (seed 0 unless given), Envoy's HashUtil::xxHash64: the ring's points, the Maglev
// table's permutations and requests' hashes are Envoy's, so that Envoy and meshproxy send the
// same key to the same host.
uint64_t Hash64(std::string_view data, uint64_t seed = 0);
// splitmix64's step: Mix64(seed + n * kGoldenGamma) for n = 0, 1, 2, ... are independent
// well-mixed numbers (a second hash of a hash, one draw per decision from one random seed).
inline constexpr uint64_t kGoldenGamma = 0x9e3779b97f4a7c15ULL;
uint64_t Mix64(uint64_t h);

}  // namespace meshpilot::sidecar::upstream
