#include "sidecar/upstream/load_balancer.h"

#include "absl/strings/str_cat.h"
#include "sidecar/upstream/maglev.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"

#define XXH_INLINE_ALL  // header-only: nothing to link
#include <xxhash.h>

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

namespace {

uint64_t SplitMixFinalise(uint64_t h) {
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

}  // namespace

std::string AddressString(const boost::asio::ip::tcp::endpoint& endpoint) {
  const std::string address = endpoint.address().to_string();
  return endpoint.address().is_v6() ? absl::StrCat("[", address, "]:", endpoint.port())
                                    : absl::StrCat(address, ":", endpoint.port());
}

uint64_t Hash64(std::string_view data, uint64_t seed) {
  return XXH64(data.data(), data.size(), seed);
}

uint64_t Mix64(uint64_t h) { return SplitMixFinalise(h + kGoldenGamma); }

double SlowStartWeight(uint32_t weight, const config::SlowStart& slow_start,
                       Clock::time_point joined, Clock::time_point now) {
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - joined);
  if (elapsed >= slow_start.window) return weight;
  const double time_factor = static_cast<double>(std::max<int64_t>(1, elapsed.count())) /
                             static_cast<double>(slow_start.window.count());
  return weight * std::max(slow_start.min_weight_percent / 100,
                           std::pow(time_factor, 1 / slow_start.aggression));
}

// One priority level: its localities, their schedules, its ring or Maglev table.
class LoadBalancer::Level {
 public:
  Level(config::LbPolicy policy, uint32_t choice_count,
        const std::vector<const config::Locality*>& localities, uint64_t ring_size,
        uint64_t max_ring_size, const std::optional<SlowStartHosts>& slow_start);

  // A host: one `preferred` accepts, else one `usable` accepts, else (unless `strict`) any;
  // null when there is none.
  const Host* Pick(std::mt19937_64& rng, HostPredicate preferred, HostPredicate usable,
                   bool strict, std::optional<uint64_t> hash, Clock::time_point now) const;
  void AppendHosts(std::vector<const Host*>& hosts) const;
  size_t host_count() const { return host_count_; }
  size_t CountUsable(HostPredicate usable) const;
  // Its hosts and the endpoints EDS called unhealthy: the denominator of its health.
  size_t total() const { return host_count_ + unhealthy_; }

 private:
  struct LocalityHosts {
    uint32_t weight = 0;  // 0: the sum of its hosts' weights
    std::vector<std::unique_ptr<Host>> hosts;
    uint32_t unhealthy = 0;  // endpoints EDS called unhealthy: they lower its availability
    mutable std::atomic<uint64_t> next{0};  // ROUND_ROBIN position
  };
  // What depends on the hosts' weights: the steady one, and one per step of a slow start ramp.
  struct Schedule {
    // Per locality: ROUND_ROBIN order; empty in a ramp's steps (see PickInLocality).
    std::vector<std::vector<uint32_t>> wheels;
    std::vector<std::vector<uint64_t>> cumulative;  // per locality: for weighted random
    std::vector<uint32_t> locality_wheel;
    std::vector<uint64_t> locality_cumulative;
  };
  // `weight_of(host)`: a host's weight in this schedule.
  Schedule MakeSchedule(absl::FunctionRef<uint64_t(const Host&)> weight_of,
                        uint64_t locality_scale, bool wheels) const;
  void BuildRamp(const SlowStartHosts& slow_start);
  const Schedule& ScheduleAt(Clock::time_point now) const;

  size_t PickLocality(const Schedule& schedule, std::mt19937_64& rng) const;
  // Envoy's locality availability: each locality's weight times min(1, 1.4 × its `usable`
  // hosts over all of them, EDS-unhealthy ones counted), so that a locality losing hosts
  // passes its traffic to the others. Empty when no locality has any.
  using LocalityWeights = absl::InlinedVector<double, 8>;
  LocalityWeights AvailableWeights(const Schedule& schedule, HostPredicate usable) const;
  // A locality drawn at random by `weights` (AvailableWeights).
  static size_t PickAvailable(const LocalityWeights& weights, std::mt19937_64& rng);
  const Host* PickInLocality(const Schedule& schedule, size_t locality,
                             std::mt19937_64& rng) const;
  const Host* WeightedRandom(const Schedule& schedule, size_t locality,
                             std::mt19937_64& rng) const;
  bool IsHashPolicy() const {
    return policy_ == config::LbPolicy::kRingHash || policy_ == config::LbPolicy::kMaglev;
  }
  // The first host at or after `hash` on the ring (the Maglev table's slot `hash` and those
  // after it) that `usable` accepts; null if none does.
  const Host* PickByHash(uint64_t hash, HostPredicate usable) const;

  config::LbPolicy policy_;
  uint32_t choice_count_;
  std::vector<std::unique_ptr<LocalityHosts>> localities_;
  size_t host_count_ = 0;
  size_t unhealthy_ = 0;  // EDS-unhealthy endpoints, all localities
  std::vector<std::pair<uint64_t, const Host*>> ring_;  // RING_HASH: sorted by hash
  std::vector<const Host*> maglev_;                     // MAGLEV: the table
  Schedule steady_;
  // Slow start: ramp_[i] holds from ramp_start_ + i * ramp_step_ for one step; then steady_.
  std::vector<Schedule> ramp_;
  Clock::time_point ramp_start_;
  Clock::duration ramp_step_{};
  mutable std::atomic<uint64_t> next_locality_{0};
};

LoadBalancer::Level::Level(config::LbPolicy policy, uint32_t choice_count,
                           const std::vector<const config::Locality*>& localities,
                           uint64_t ring_size, uint64_t max_ring_size,
                           const std::optional<SlowStartHosts>& slow_start)
    : policy_(policy), choice_count_(choice_count) {
  for (const config::Locality* source : localities) {
    unhealthy_ += source->unhealthy;
    if (source->endpoints.empty()) continue;
    auto locality = std::make_unique<LocalityHosts>();
    locality->weight = source->weight;
    locality->unhealthy = source->unhealthy;
    for (const config::Endpoint& endpoint : source->endpoints) {
      auto host = std::make_unique<Host>();
      host->address = endpoint.address;
      host->weight = endpoint.weight;
      host->zone = source->zone;
      host->hostname = endpoint.hostname;
      host->priority = source->priority;
      locality->hosts.push_back(std::move(host));
    }
    host_count_ += locality->hosts.size();
    localities_.push_back(std::move(locality));
  }
  if (localities_.empty()) return;
  steady_ = MakeSchedule([](const Host& host) { return host.weight; }, 1, true);
  if (IsHashPolicy()) {
    // Each host's share of the ring or table: its locality's share times its share inside it.
    std::vector<MaglevHost> shares;
    const double sum = static_cast<double>(steady_.locality_cumulative.back());
    uint64_t previous_locality = 0;
    for (size_t l = 0; l < localities_.size(); ++l) {
      const double locality_share = (steady_.locality_cumulative[l] - previous_locality) / sum;
      previous_locality = steady_.locality_cumulative[l];
      const double host_total = static_cast<double>(steady_.cumulative[l].back());
      for (const auto& host : localities_[l]->hosts) {
        shares.push_back({host.get(), AddressString(host->address),
                          locality_share * host->weight / host_total});
      }
    }
    if (policy_ == config::LbPolicy::kMaglev) {
      maglev_ = BuildMaglevTable(shares, ring_size);
    } else {
      // Envoy's ring: scaled so that the lightest host gets a whole number of points (at
      // least minimum_ring_size in all, at most maximum_ring_size); the points are running
      // sums over the hosts in order, each point the xxHash64 of "ADDRESS_i".
      double lightest = 1;
      for (const MaglevHost& share : shares) lightest = std::min(lightest, share.weight);
      const double scale = std::min(std::ceil(lightest * static_cast<double>(ring_size)) / lightest,
                                    static_cast<double>(max_ring_size));
      ring_.reserve(static_cast<size_t>(std::ceil(scale)));
      double current = 0;
      double target = 0;
      for (const MaglevHost& share : shares) {
        target += scale * share.weight;
        for (uint64_t i = 0; current < target; ++i, ++current) {
          ring_.emplace_back(Hash64(absl::StrCat(share.key, "_", i)), share.host);
        }
      }
      std::sort(ring_.begin(), ring_.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
    }
  }
  if (slow_start && (policy_ == config::LbPolicy::kRoundRobin ||
                     policy_ == config::LbPolicy::kLeastRequest)) {
    BuildRamp(*slow_start);
  }
}

void LoadBalancer::Level::AppendHosts(std::vector<const Host*>& hosts) const {
  for (const auto& locality : localities_) {
    for (const auto& host : locality->hosts) hosts.push_back(host.get());
  }
}

size_t LoadBalancer::Level::CountUsable(HostPredicate usable) const {
  size_t n = 0;
  for (const auto& locality : localities_) {
    for (const auto& host : locality->hosts) n += usable(host.get()) ? 1 : 0;
  }
  return n;
}
LoadBalancer::Level::Schedule LoadBalancer::Level::MakeSchedule(
    absl::FunctionRef<uint64_t(const Host&)> weight_of, uint64_t locality_scale,
    bool wheels) const {
  Schedule schedule;
  std::vector<uint64_t> locality_weights;
  for (size_t l = 0; l < localities_.size(); ++l) {
    std::vector<uint64_t> weights;
    std::vector<uint64_t>& cumulative = schedule.cumulative.emplace_back();
    uint64_t sum = 0;
    for (const auto& host : localities_[l]->hosts) {
      weights.push_back(weight_of(*host));
      cumulative.push_back(sum += weights.back());
    }
    schedule.wheels.push_back(wheels ? SmoothWeightedOrder(std::move(weights))
                                     : std::vector<uint32_t>());
    locality_weights.push_back(localities_[l]->weight != 0
                                   ? localities_[l]->weight * locality_scale
                                   : sum);
  }
  uint64_t sum = 0;
  for (uint64_t w : locality_weights) schedule.locality_cumulative.push_back(sum += w);
  schedule.locality_wheel = SmoothWeightedOrder(std::move(locality_weights));
  return schedule;
}

void LoadBalancer::Level::BuildRamp(const SlowStartHosts& slow_start) {
  // The ramp lasts until the last host to join leaves its window, in steps of a 32nd of the
  // window (at least 100 ms); each step's weights are those of its middle.
  const config::SlowStart& config = slow_start.config;
  absl::flat_hash_map<const Host*, Clock::time_point> joined;
  Clock::time_point ramp_end = slow_start.now;
  for (const auto& locality : localities_) {
    for (const auto& host : locality->hosts) {
      auto it = slow_start.joined.find(host->address);
      const Clock::time_point at = it != slow_start.joined.end() ? it->second : slow_start.now;
      joined[host.get()] = at;
      ramp_end = std::max(ramp_end, at + config.window);
    }
  }
  if (ramp_end <= slow_start.now) return;
  ramp_start_ = slow_start.now;
  ramp_step_ = std::max<Clock::duration>(config.window / 32, std::chrono::milliseconds(100));
  // Weights in thousandths, so a host at 10% of weight 1 still has a share.
  constexpr uint64_t kScale = 1000;
  for (Clock::time_point step = ramp_start_; step < ramp_end; step += ramp_step_) {
    const Clock::time_point middle = step + ramp_step_ / 2;
    ramp_.push_back(MakeSchedule(
        [&](const Host& host) {
          return std::max<uint64_t>(
              1, std::llround(kScale * SlowStartWeight(host.weight, config, joined[&host], middle)));
        },
        kScale, false));
  }
}

const LoadBalancer::Level::Schedule& LoadBalancer::Level::ScheduleAt(Clock::time_point now) const {
  if (ramp_.empty()) return steady_;
  if (now < ramp_start_) return ramp_.front();
  const auto step = static_cast<size_t>((now - ramp_start_) / ramp_step_);
  return step < ramp_.size() ? ramp_[step] : steady_;
}

const Host* LoadBalancer::Level::PickByHash(uint64_t hash, HostPredicate usable) const {
  if (!maglev_.empty()) {
    for (uint64_t step = 0, slot = hash % maglev_.size(); step < maglev_.size(); ++step) {
      if (usable(maglev_[slot])) return maglev_[slot];
      if (++slot == maglev_.size()) slot = 0;
    }
    return nullptr;
  }
  auto it = std::lower_bound(ring_.begin(), ring_.end(), hash,
                             [](const auto& entry, uint64_t h) { return entry.first < h; });
  for (size_t step = 0; step < ring_.size(); ++step, ++it) {
    if (it == ring_.end()) it = ring_.begin();
    if (usable(it->second)) return it->second;
  }
  return nullptr;
}

size_t LoadBalancer::Level::PickLocality(const Schedule& schedule, std::mt19937_64& rng) const {
  if (localities_.size() == 1) return 0;
  if (policy_ == config::LbPolicy::kRoundRobin) {
    uint64_t n = next_locality_.fetch_add(1, std::memory_order_relaxed);
    return schedule.locality_wheel[n % schedule.locality_wheel.size()];
  }
  const std::vector<uint64_t>& cumulative = schedule.locality_cumulative;
  uint64_t point = rng() % cumulative.back();
  return std::upper_bound(cumulative.begin(), cumulative.end(), point) - cumulative.begin();
}

LoadBalancer::Level::LocalityWeights LoadBalancer::Level::AvailableWeights(
    const Schedule& schedule, HostPredicate usable) const {
  LocalityWeights weights;
  double sum = 0;
  uint64_t previous = 0;
  for (size_t l = 0; l < localities_.size(); ++l) {
    const LocalityHosts& locality = *localities_[l];
    const uint64_t weight = schedule.locality_cumulative[l] - previous;
    previous = schedule.locality_cumulative[l];
    size_t up = 0;
    for (const auto& host : locality.hosts) up += usable(host.get()) ? 1 : 0;
    const double all = static_cast<double>(locality.hosts.size() + locality.unhealthy);
    sum += weights.emplace_back(static_cast<double>(weight) * std::min(1.0, 1.4 * up / all));
  }
  if (sum <= 0) weights.clear();
  return weights;
}

size_t LoadBalancer::Level::PickAvailable(const LocalityWeights& weights, std::mt19937_64& rng) {
  double point = std::uniform_real_distribution<double>(
      0, std::accumulate(weights.begin(), weights.end(), 0.0))(rng);
  for (size_t l = 0; l < weights.size(); ++l) {
    if (point < weights[l]) return l;
    point -= weights[l];
  }
  return weights.size() - 1;
}

const Host* LoadBalancer::Level::WeightedRandom(const Schedule& schedule, size_t locality,
                                         std::mt19937_64& rng) const {
  const std::vector<uint64_t>& cumulative = schedule.cumulative[locality];
  uint64_t point = rng() % cumulative.back();
  auto it = std::upper_bound(cumulative.begin(), cumulative.end(), point);
  return localities_[locality]->hosts[it - cumulative.begin()].get();
}

const Host* LoadBalancer::Level::PickInLocality(const Schedule& schedule, size_t locality,
                                         std::mt19937_64& rng) const {
  switch (policy_) {
    case config::LbPolicy::kRoundRobin: {
      const LocalityHosts& hosts = *localities_[locality];
      const std::vector<uint32_t>& wheel = schedule.wheels[locality];
      const uint64_t n = hosts.next.fetch_add(1, std::memory_order_relaxed);
      if (!wheel.empty()) return hosts.hosts[wheel[n % wheel.size()]].get();
      // A ramp's step: the n-th point of the golden-ratio (Weyl) sequence over the weights, as
      // evenly spread as a wheel's turns, with no wheel to build.
      const std::vector<uint64_t>& cumulative = schedule.cumulative[locality];
      const uint64_t fraction = n * kGoldenGamma;  // n / golden ratio, mod 1
      const auto point = static_cast<uint64_t>(
          (static_cast<unsigned __int128>(fraction) * cumulative.back()) >> 64);
      auto it = std::upper_bound(cumulative.begin(), cumulative.end(), point);
      return hosts.hosts[it - cumulative.begin()].get();
    }
    case config::LbPolicy::kRandom:
    case config::LbPolicy::kRingHash:  // (not reached: Pick hashes)
    case config::LbPolicy::kMaglev:
      return WeightedRandom(schedule, locality, rng);
    case config::LbPolicy::kLeastRequest: {
      const Host* best = WeightedRandom(schedule, locality, rng);
      for (uint32_t i = 1; i < choice_count_; ++i) {
        const Host* other = WeightedRandom(schedule, locality, rng);
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

const Host* LoadBalancer::Level::Pick(std::mt19937_64& rng, HostPredicate preferred,
                                      HostPredicate usable, bool strict,
                                      std::optional<uint64_t> hash, Clock::time_point now) const {
  if (localities_.empty()) return nullptr;
  if (IsHashPolicy()) {
    const uint64_t point = hash ? *hash : rng();
    for (HostPredicate accept : {preferred, usable}) {
      if (const Host* host = PickByHash(point, accept)) return host;
    }
    // Every host ejected with panic mode off (healthy_panic_threshold 0): none.
    return strict ? nullptr : PickByHash(point, [](const Host*) { return true; });
  }
  const Schedule& schedule = ScheduleAt(now);
  // Localities weigh their full weight unless some have hosts out (ejected: `strict`, or
  // unhealthy in EDS); their availability is taken once per pick.
  LocalityWeights available;
  if (localities_.size() > 1 && (strict || unhealthy_ != 0)) {
    available = AvailableWeights(schedule, usable);
  }
  auto pick_locality = [&] {
    return available.empty() ? PickLocality(schedule, rng) : PickAvailable(available, rng);
  };
  // A locality, then a usable host of it: Envoy picks among a locality's healthy hosts, so an
  // ejected one drawn gives way to another of the same locality (a few draws, then the first).
  auto draw = [&] {
    const size_t locality = pick_locality();
    const Host* host = PickInLocality(schedule, locality, rng);
    for (int attempt = 0; attempt < 4 && !usable(host); ++attempt) {
      host = PickInLocality(schedule, locality, rng);
    }
    if (usable(host)) return host;
    for (const auto& other : localities_[locality]->hosts) {
      if (usable(other.get())) return static_cast<const Host*>(other.get());
    }
    return host;
  };
  const Host* host = draw();
  // As Envoy's previous_hosts predicate with host_selection_retry_max_attempts: a few tries.
  for (int attempt = 0; attempt < 4 && !preferred(host); ++attempt) host = draw();
  if (preferred(host)) return host;
  // Unlucky draws, or few usable hosts: any other usable host, then any usable one.
  for (HostPredicate accept : {preferred, usable}) {
    for (const auto& locality : localities_) {
      for (const auto& other : locality->hosts) {
        if (accept(other.get())) return other.get();
      }
    }
  }
  // Every host ejected with panic mode off (healthy_panic_threshold 0): none.
  return strict ? nullptr : host;
}

LoadBalancer::LoadBalancer(config::LbPolicy policy, uint32_t choice_count,
                           const std::vector<config::Locality>& localities, uint64_t ring_size,
                           const std::optional<config::OutlierDetection>& outlier_detection,
                           std::shared_ptr<ClusterStats> stats,
                           const std::optional<SlowStartHosts>& slow_start,
                           uint64_t max_ring_size) {
  choice_count = std::max<uint32_t>(2, choice_count);
  for (size_t begin = 0; begin < localities.size();) {
    std::vector<const config::Locality*> level;
    size_t end = begin;
    for (; end < localities.size() && localities[end].priority == localities[begin].priority;
         ++end) {
      level.push_back(&localities[end]);
    }
    begin = end;
    auto built = std::make_unique<Level>(policy, choice_count, level, ring_size, max_ring_size,
                                         slow_start);
    if (built->total() != 0) levels_.push_back(std::move(built));
  }
  // No host at all: nothing to pick (an all-unhealthy assignment included).
  if (std::none_of(levels_.begin(), levels_.end(),
                   [](const auto& level) { return level->host_count() != 0; })) {
    levels_.clear();
  }
  if (outlier_detection) {
    outlier_ = std::make_unique<OutlierDetector>(*outlier_detection, Hosts(), std::move(stats));
  }
}

LoadBalancer::~LoadBalancer() = default;

std::vector<const Host*> LoadBalancer::Hosts() const {
  std::vector<const Host*> hosts;
  for (const auto& level : levels_) level->AppendHosts(hosts);
  return hosts;
}

LoadBalancer::PriorityLoad LoadBalancer::PriorityLoadAt(Clock::time_point now) const {
  const size_t n = levels_.size();
  PriorityLoad result{std::vector<uint32_t>(n, 0), std::vector<bool>(n, false)};
  if (n == 0) return result;
  if (outlier_ != nullptr) outlier_->SkipEjected(now);  // brings back hosts whose time is up
  const bool ejections = outlier_ != nullptr && outlier_->ejected_count() > 0;
  auto not_ejected = [&](const Host* host) { return !outlier_->Ejected(*host, now); };
  std::vector<uint64_t> usable(n);
  uint64_t health_sum = 0;
  std::vector<uint64_t> health(n);
  for (size_t i = 0; i < n; ++i) {
    usable[i] = ejections ? levels_[i]->CountUsable(not_ejected) : levels_[i]->host_count();
    // Envoy's overprovisioning factor: 1.4.
    health[i] = std::min<uint64_t>(100, 140 * usable[i] / levels_[i]->total());
    health_sum += health[i];
  }
  const uint64_t normalized = std::min<uint64_t>(100, health_sum);
  const double threshold = outlier_ != nullptr ? outlier_->healthy_panic_threshold() : 50;
  // `weights` shared out as percentages, what rounding leaves to the first level with a share.
  auto share = [&](const std::vector<uint64_t>& weights, uint64_t sum) {
    uint32_t left = 100;
    for (size_t i = 0; i < n; ++i) {
      result.load[i] = std::min<uint32_t>(left, static_cast<uint32_t>(weights[i] * 100 / sum));
      left -= result.load[i];
    }
    for (size_t i = 0; i < n && left != 0; ++i) {
      if (weights[i] != 0) result.load[i] += std::exchange(left, 0);
    }
  };
  if (normalized == 0 && threshold == 0) {
    result.load[0] = 100;  // nothing healthy and no panic mode: picks find no host
    return result;
  }
  if (normalized != 0) {
    share(health, health_sum < 100 ? health_sum : 100);
    if (normalized == 100) return result;
    bool all = true;
    for (size_t i = 0; i < n; ++i) {
      result.panic[i] = static_cast<double>(usable[i]) * 100 <
                        threshold * static_cast<double>(levels_[i]->total());
      all = all && result.panic[i];
    }
    if (!all) return result;
  }
  // Every level in panic: each takes a share by its hosts, and all of them take traffic.
  std::vector<uint64_t> counts(n);
  uint64_t count_sum = 0;
  for (size_t i = 0; i < n; ++i) count_sum += counts[i] = levels_[i]->host_count();
  share(counts, count_sum);
  result.panic.assign(n, true);
  return result;
}

const Host* LoadBalancer::Pick(std::mt19937_64& rng, const Host* avoid,
                               std::optional<uint64_t> hash, Clock::time_point now) const {
  if (levels_.empty()) return nullptr;
  size_t level = 0;
  bool skip_ejected = false;
  if (levels_.size() == 1) {
    skip_ejected = outlier_ != nullptr && outlier_->SkipEjected(now);
  } else {
    // Envoy picks the level by the request's hash (hash policies) or a random draw.
    const PriorityLoad priority = PriorityLoadAt(now);
    const uint64_t point = (hash ? *hash : rng()) % 100;
    for (uint64_t sum = priority.load[0]; level + 1 < levels_.size() && point >= sum;) {
      sum += priority.load[++level];
    }
    skip_ejected = outlier_ != nullptr && outlier_->ejected_count() > 0 && !priority.panic[level];
  }
  auto healthy = [&](const Host* h) { return !skip_ejected || !outlier_->Ejected(*h, now); };
  auto preferred = [&](const Host* h) { return h != avoid && healthy(h); };
  return levels_[level]->Pick(rng, preferred, healthy, skip_ejected, hash, now);
}

}  // namespace meshpilot::sidecar::upstream
