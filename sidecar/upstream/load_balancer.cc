#include "sidecar/upstream/load_balancer.h"

#include <algorithm>
#include <numeric>
#include <string>

namespace meshpilot::sidecar::upstream {

using HostPredicate = absl::FunctionRef<bool(const Host*)>;

std::vector<uint32_t> SmoothWeightedOrder(std::vector<uint64_t> weights, size_t max_length) {
  if (weights.empty()) return {};
  uint64_t g = 0;
  for (uint64_t w : weights) g = std::gcd(g, w);
  if (g == 0) g = 1;
  uint64_t total = 0;
  for (uint64_t& w : weights) total += (w /= g);
  if (total > max_length) {
    // Keep the proportions approximately; every host keeps at least one slot.
    total = 0;
    const uint64_t sum = std::accumulate(weights.begin(), weights.end(), uint64_t{0});
    for (uint64_t& w : weights) total += (w = std::max<uint64_t>(1, w * max_length / sum));
  }
  std::vector<int64_t> current(weights.size(), 0);
  std::vector<uint32_t> order;
  order.reserve(total);
  for (uint64_t step = 0; step < total; ++step) {
    size_t best = 0;
    for (size_t i = 0; i < weights.size(); ++i) {
      current[i] += static_cast<int64_t>(weights[i]);
      if (current[i] > current[best]) best = i;
    }
    current[best] -= static_cast<int64_t>(total);
    order.push_back(static_cast<uint32_t>(best));
  }
  return order;
}

uint64_t Hash64(std::string_view data) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

LoadBalancer::LoadBalancer(config::LbPolicy policy, uint32_t choice_count,
                           const std::vector<config::Locality>& localities, uint64_t ring_size,
                           const std::optional<config::OutlierDetection>& outlier_detection,
                           std::shared_ptr<ClusterStats> stats)
    : policy_(policy), choice_count_(std::max<uint32_t>(2, choice_count)) {
  std::vector<uint64_t> locality_weights;
  for (const config::Locality& source : localities) {
    if (source.endpoints.empty()) continue;
    auto locality = std::make_unique<LocalityHosts>();
    std::vector<uint64_t> weights;
    uint64_t sum = 0;
    for (const config::Endpoint& endpoint : source.endpoints) {
      auto host = std::make_unique<Host>();
      host->address = endpoint.address;
      host->weight = endpoint.weight;
      host->zone = source.zone;
      sum += endpoint.weight;
      locality->cumulative.push_back(sum);
      weights.push_back(endpoint.weight);
      locality->hosts.push_back(std::move(host));
    }
    locality->wheel = SmoothWeightedOrder(weights);
    locality->weight = source.weight != 0 ? source.weight : sum;
    locality_weights.push_back(locality->weight);
    localities_.push_back(std::move(locality));
  }
  uint64_t sum = 0;
  for (uint64_t w : locality_weights) locality_cumulative_.push_back(sum += w);
  locality_wheel_ = SmoothWeightedOrder(std::move(locality_weights));
  if (policy_ == config::LbPolicy::kRingHash && sum > 0) {
    // Each host's share of the ring: its locality's share times its share inside it.
    for (const auto& locality : localities_) {
      const double locality_share = static_cast<double>(locality->weight) / sum;
      const double host_total = static_cast<double>(locality->cumulative.back());
      for (const auto& host : locality->hosts) {
        const double share = locality_share * host->weight / host_total;
        const uint64_t replicas = std::max<uint64_t>(1, static_cast<uint64_t>(share * ring_size + 0.5));
        const std::string key = host->address.address().to_string() + ":" +
                                std::to_string(host->address.port()) + "_";
        for (uint64_t i = 0; i < replicas; ++i) {
          ring_.emplace_back(Hash64(key + std::to_string(i)), host.get());
        }
      }
    }
    std::sort(ring_.begin(), ring_.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  if (outlier_detection) {
    outlier_ = std::make_unique<OutlierDetector>(*outlier_detection, Hosts(), std::move(stats));
  }
}

const Host* LoadBalancer::PickOnRing(uint64_t hash,
                                     HostPredicate usable) const {
  auto it = std::lower_bound(ring_.begin(), ring_.end(), hash,
                             [](const auto& entry, uint64_t h) { return entry.first < h; });
  for (size_t step = 0; step < ring_.size(); ++step, ++it) {
    if (it == ring_.end()) it = ring_.begin();
    if (usable(it->second)) return it->second;
  }
  return nullptr;
}

std::vector<const Host*> LoadBalancer::Hosts() const {
  std::vector<const Host*> hosts;
  for (const auto& locality : localities_) {
    for (const auto& host : locality->hosts) hosts.push_back(host.get());
  }
  return hosts;
}

const LoadBalancer::LocalityHosts& LoadBalancer::PickLocality(std::mt19937_64& rng) const {
  if (localities_.size() == 1) return *localities_[0];
  if (policy_ == config::LbPolicy::kRoundRobin) {
    uint64_t n = next_locality_.fetch_add(1, std::memory_order_relaxed);
    return *localities_[locality_wheel_[n % locality_wheel_.size()]];
  }
  uint64_t point = rng() % locality_cumulative_.back();
  auto it = std::upper_bound(locality_cumulative_.begin(), locality_cumulative_.end(), point);
  return *localities_[it - locality_cumulative_.begin()];
}

const Host* LoadBalancer::WeightedRandom(const LocalityHosts& locality, std::mt19937_64& rng) {
  uint64_t point = rng() % locality.cumulative.back();
  auto it = std::upper_bound(locality.cumulative.begin(), locality.cumulative.end(), point);
  return locality.hosts[it - locality.cumulative.begin()].get();
}

const Host* LoadBalancer::PickInLocality(const LocalityHosts& locality,
                                         std::mt19937_64& rng) const {
  switch (policy_) {
    case config::LbPolicy::kRoundRobin: {
      uint64_t n = locality.next.fetch_add(1, std::memory_order_relaxed);
      return locality.hosts[locality.wheel[n % locality.wheel.size()]].get();
    }
    case config::LbPolicy::kRandom:
    case config::LbPolicy::kRingHash:  // (not reached: Pick uses the ring)
      return WeightedRandom(locality, rng);
    case config::LbPolicy::kLeastRequest: {
      const Host* best = WeightedRandom(locality, rng);
      for (uint32_t i = 1; i < choice_count_; ++i) {
        const Host* other = WeightedRandom(locality, rng);
        if (other->active_requests.load(std::memory_order_relaxed) <
            best->active_requests.load(std::memory_order_relaxed)) {
          best = other;
        }
      }
      return best;
    }
  }
  return nullptr;
}

const Host* LoadBalancer::Pick(std::mt19937_64& rng, const Host* avoid,
                               std::optional<uint64_t> hash) const {
  if (localities_.empty()) return nullptr;
  const OutlierDetector::Clock::time_point now = OutlierDetector::Clock::now();
  const bool skip_ejected = outlier_ != nullptr && outlier_->SkipEjected(now);
  auto healthy = [&](const Host* h) { return !skip_ejected || !outlier_->Ejected(*h, now); };
  auto preferred = [&](const Host* h) { return h != avoid && healthy(h); };
  if (policy_ == config::LbPolicy::kRingHash) {
    const uint64_t point = hash ? *hash : rng();
    for (HostPredicate usable : {HostPredicate(preferred), HostPredicate(healthy)}) {
      if (const Host* host = PickOnRing(point, usable)) return host;
    }
    // Every host ejected with panic mode off (healthy_panic_threshold 0): none.
    return skip_ejected ? nullptr : PickOnRing(point, [](const Host*) { return true; });
  }
  const Host* host = PickInLocality(PickLocality(rng), rng);
  // As Envoy's previous_hosts predicate with host_selection_retry_max_attempts: a few tries.
  for (int attempt = 0; attempt < 4 && !preferred(host); ++attempt) {
    host = PickInLocality(PickLocality(rng), rng);
  }
  if (preferred(host)) return host;
  // Unlucky draws, or few usable hosts: any other healthy host, then any healthy one.
  for (HostPredicate usable : {HostPredicate(preferred), HostPredicate(healthy)}) {
    for (const auto& locality : localities_) {
      for (const auto& other : locality->hosts) {
        if (usable(other.get())) return other.get();
      }
    }
  }
  // Every host ejected with panic mode off (healthy_panic_threshold 0): none.
  return skip_ejected ? nullptr : host;
}

}  // namespace meshpilot::sidecar::upstream
