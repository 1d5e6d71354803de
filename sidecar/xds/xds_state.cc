#include "sidecar/xds/xds_state.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace meshpilot::sidecar::xds {
namespace {

using envoy::service::discovery::v3::DiscoveryResponse;

std::string Now() {
  return absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::UTCTimeZone());
}

// What a warming resource still waits for: how long at most (none: until it arrives).
struct Wait {
  std::optional<std::chrono::milliseconds> timeout;
  // Each missing dependency waits its own initial_fetch_timeout; the resource waits for all.
  void Add(std::chrono::milliseconds initial_fetch_timeout) {
    if (!waiting) {
      waiting = true;
      timeout = initial_fetch_timeout;
    } else if (timeout) {
      timeout = std::max(*timeout, initial_fetch_timeout);
    }
    if (initial_fetch_timeout.count() == 0) timeout.reset();
  }
  bool waiting = false;
};

}  // namespace

template <typename Proto, typename T, typename ParseFn, typename NameFn>
std::string XdsState::ApplyType(XdsType type, const DiscoveryResponse& response,
                                std::map<std::string, Applied<T>>& applied, ParseFn parse,
                                NameFn name_of, bool state_of_the_world) {
  const char* type_name = kTypeNames[static_cast<size_t>(type)];
  std::vector<std::string> errors;
  std::map<std::string, Applied<T>> next;
  if (!state_of_the_world) next = applied;
  std::set<std::string> seen;
  for (int i = 0; i < response.resources_size(); ++i) {
    const google::protobuf::Any& any = response.resources(i);
    if (any.type_url() != TypeUrl(type)) {
      errors.push_back(absl::StrCat("resources[", i, "]: type_url \"", any.type_url(),
                                    "\" in a response of type ", TypeUrl(type)));
      continue;
    }
    Proto proto;
    if (!any.UnpackTo(&proto)) {
      errors.push_back(absl::StrCat("resources[", i, "]: cannot decode ", type_name));
      continue;
    }
    const std::string name = name_of(proto);
    if (!seen.insert(name).second) {
      errors.push_back(absl::StrCat(type_name, " \"", name, "\": duplicate name in one response"));
      continue;
    }
    // Unchanged bytes: keep the parsed object, so everything keyed on its identity (load
    // balancer state, keep-alive connections of an unchanged listener) carries over.
    if (auto old = applied.find(name);
        old != applied.end() && old->second.dump.resource->value() == any.value()) {
      Applied<T> kept = old->second;
      kept.dump.version = response.version_info();
      next[name] = std::move(kept);
      continue;
    }
    auto parsed = parse(proto);
    if (!parsed.ok()) {
      errors.push_back(absl::StrCat(type_name, " \"", name, "\": ", parsed.status().message()));
      if (auto old = applied.find(name); old != applied.end()) next[name] = old->second;
      continue;
    }
    auto raw = std::make_shared<google::protobuf::Any>(any);
    next[name] = Applied<T>{*std::move(parsed),
                            AppliedResource{name, response.version_info(), Now(), std::move(raw)}};
  }
  applied = std::move(next);
  received_[static_cast<size_t>(type)] = true;
  std::string error = absl::StrJoin(errors, "; ");
  if (error.empty()) {
    acked_version_[static_cast<size_t>(type)] = response.version_info();
    stats_.xds_ack.fetch_add(1, std::memory_order_relaxed);
  } else {
    stats_.xds_nack.fetch_add(1, std::memory_order_relaxed);
  }
  last_error_[static_cast<size_t>(type)] = error;
  return error;
}

std::string XdsState::Apply(XdsType type, const DiscoveryResponse& response) {
  std::string error;
  switch (type) {
    case XdsType::kCluster:
      error = ApplyType<envoy::config::cluster::v3::Cluster>(
          type, response, clusters_, config::ParseCluster,
          [](const auto& p) { return p.name(); }, true);
      break;
    case XdsType::kEndpoint:
      error = ApplyType<envoy::config::endpoint::v3::ClusterLoadAssignment>(
          type, response, endpoints_, config::ParseClusterLoadAssignment,
          [](const auto& p) { return p.cluster_name(); }, false);
      break;
    case XdsType::kListener:
      error = ApplyType<envoy::config::listener::v3::Listener>(
          type, response, listeners_, config::ParseListener,
          [](const auto& p) { return p.name(); }, true);
      break;
    case XdsType::kRoute:
      error = ApplyType<envoy::config::route::v3::RouteConfiguration>(
          type, response, routes_, config::ParseRouteConfiguration,
          [](const auto& p) { return p.name(); }, false);
      break;
  }
  Warm(std::chrono::steady_clock::now());  // removed resources leave service at once
  PruneToSubscriptions();
  return error;
}

namespace {

// The RDS names of a listener's HTTP filter chains, with their initial_fetch_timeout.
template <typename Fn>
void ForEachRds(const config::ListenerConfig& listener, Fn fn) {
  auto visit = [&fn](const config::FilterChain& chain) {
    if (const auto* http = std::get_if<config::HttpChain>(&chain.filter);
        http != nullptr && !http->rds_name.empty()) {
      fn(http->rds_name, http->rds_initial_fetch_timeout);
    }
  };
  for (const config::FilterChain& chain : listener.chains) visit(chain);
  if (listener.default_chain) visit(*listener.default_chain);
}

// The join times of the endpoints now in `localities`: the known ones keep theirs, new ones
// join `now`, and those gone are forgotten. Updates `known` and returns it.
const std::map<boost::asio::ip::tcp::endpoint, SteadyTime>& JoinTimes(
    std::map<boost::asio::ip::tcp::endpoint, SteadyTime>& known,
    const std::vector<config::Locality>& localities, SteadyTime now) {
  std::map<boost::asio::ip::tcp::endpoint, SteadyTime> current;
  for (const config::Locality& locality : localities) {
    for (const config::Endpoint& endpoint : locality.endpoints) {
      auto it = known.find(endpoint.address);
      current.emplace(endpoint.address, it != known.end() ? it->second : now);
    }
  }
  known = std::move(current);
  return known;
}

}  // namespace

std::vector<std::string> XdsState::Subscription(XdsType type) const {
  // What the applied resources and the (older) ones in service need.
  std::set<std::string> names;
  if (type == XdsType::kEndpoint) {
    for (const auto* clusters : {&clusters_, &active_clusters_}) {
      for (const auto& [name, cluster] : *clusters) {
        if (cluster.parsed->type == config::DiscoveryType::kEds) {
          names.insert(cluster.parsed->eds_service_name);
        }
      }
    }
  } else if (type == XdsType::kRoute) {
    for (const auto* listeners : {&listeners_, &active_listeners_}) {
      for (const auto& [name, listener] : *listeners) {
        ForEachRds(*listener.parsed, [&names](const std::string& rds, auto) { names.insert(rds); });
      }
    }
  }
  return std::vector<std::string>(names.begin(), names.end());
}

namespace {

// Puts into `active` each applied resource that waits for nothing (`wait_of` says), or whose
// wait has timed out; the others stay in `warming` (their version and since when).
template <typename T, typename WaitFn>
void WarmType(const std::map<std::string, T>& applied, std::map<std::string, T>& active,
              std::map<std::string, Warming>& warming, SteadyTime now, WaitFn wait_of) {
  std::map<std::string, Warming> still;
  for (const auto& [name, resource] : applied) {
    if (auto in_service = active.find(name);
        in_service != active.end() && in_service->second.parsed == resource.parsed) {
      in_service->second = resource;  // the same version, maybe re-sent under a newer one
      continue;
    }
    const Wait wait = wait_of(*resource.parsed);
    if (wait.waiting) {
      Warming w{resource.parsed.get(), now, std::nullopt};
      if (auto old = warming.find(name); old != warming.end() && old->second.version == w.version) {
        w.since = old->second.since;
      }
      if (wait.timeout) w.deadline = w.since + *wait.timeout;
      if (!w.deadline || now < *w.deadline) {
        still[name] = w;
        continue;
      }
    }
    active[name] = resource;
  }
  for (auto it = active.begin(); it != active.end();) {
    it = applied.contains(it->first) ? std::next(it) : active.erase(it);
  }
  warming = std::move(still);
}

}  // namespace

void XdsState::Warm(SteadyTime now) {
  WarmType(clusters_, active_clusters_, warming_clusters_, now,
           [this](const config::ClusterConfig& cluster) {
             Wait wait;
             if (cluster.type == config::DiscoveryType::kEds &&
                 !endpoints_.contains(cluster.eds_service_name)) {
               wait.Add(cluster.eds_initial_fetch_timeout);
             }
             return wait;
           });
  WarmType(listeners_, active_listeners_, warming_listeners_, now,
           [this](const config::ListenerConfig& listener) {
             Wait wait;
             ForEachRds(listener, [&](const std::string& rds, std::chrono::milliseconds timeout) {
               if (!routes_.contains(rds)) wait.Add(timeout);
             });
             return wait;
           });
  initialized_ = initialized_ || (received_[static_cast<size_t>(XdsType::kCluster)] &&
                                  received_[static_cast<size_t>(XdsType::kListener)] &&
                                  warming_clusters_.empty() && warming_listeners_.empty());
}

std::optional<SteadyTime> XdsState::NextWarmingDeadline() const {
  std::optional<SteadyTime> next;
  for (const auto* warming : {&warming_clusters_, &warming_listeners_}) {
    for (const auto& [name, w] : *warming) {
      if (w.deadline && (!next || *w.deadline < *next)) next = w.deadline;
    }
  }
  return next;
}

void XdsState::PruneToSubscriptions() {
  // Endpoints and routes nobody needs any more are dropped (SotW: unsubscribed names go).
  auto prune = [](auto& applied, const std::vector<std::string>& wanted) {
    std::set<std::string> keep(wanted.begin(), wanted.end());
    for (auto it = applied.begin(); it != applied.end();) {
      it = keep.contains(it->first) ? std::next(it) : applied.erase(it);
    }
  };
  if (received_[static_cast<size_t>(XdsType::kCluster)]) {
    prune(endpoints_, Subscription(XdsType::kEndpoint));
  }
  if (received_[static_cast<size_t>(XdsType::kListener)]) {
    prune(routes_, Subscription(XdsType::kRoute));
  }
}

std::shared_ptr<const ProxyConfig> XdsState::Build(SteadyTime now) {
  Warm(now);
  auto config = std::make_shared<ProxyConfig>();
  std::map<std::string, BalancerKey> balancers;
  std::map<std::string, std::map<boost::asio::ip::tcp::endpoint, SteadyTime>> joined;
  for (const auto& [name, cluster] : active_clusters_) {
    ClusterEntry entry;
    entry.config = cluster.parsed;
    entry.stats = stats_.Cluster(name);
    std::shared_ptr<const config::EndpointSet> endpoints;
    switch (cluster.parsed->type) {
      case config::DiscoveryType::kEds:
        if (auto it = endpoints_.find(cluster.parsed->eds_service_name); it != endpoints_.end()) {
          endpoints = it->second.parsed;
        }
        break;
      case config::DiscoveryType::kStatic:
        endpoints = cluster.parsed->static_endpoints;
        break;
      case config::DiscoveryType::kOriginalDst:
        break;
    }
    if (cluster.parsed->type != config::DiscoveryType::kOriginalDst) {
      auto old = balancers_.find(name);
      if (old != balancers_.end() && old->second.cluster == cluster.parsed &&
          old->second.endpoints == endpoints) {
        entry.lb = old->second.lb;
      } else {
        static const std::vector<config::Locality> kNone;
        const std::vector<config::Locality>& localities = endpoints ? endpoints->localities : kNone;
        std::optional<upstream::SlowStartHosts> slow_start;
        if (cluster.parsed->slow_start) {
          slow_start = upstream::SlowStartHosts{*cluster.parsed->slow_start, now,
                                                JoinTimes(joined_[name], localities, now)};
        }
        entry.lb = std::make_shared<const upstream::LoadBalancer>(
            cluster.parsed->lb_policy, cluster.parsed->choice_count, localities,
            cluster.parsed->ring_size, cluster.parsed->outlier_detection, entry.stats,
            slow_start, cluster.parsed->max_ring_size);
      }
      if (auto it = joined_.find(name); it != joined_.end() && cluster.parsed->slow_start) {
        joined[name] = std::move(it->second);
      }
      balancers[name] = BalancerKey{cluster.parsed, endpoints, entry.lb};
    }
    config->clusters.emplace(name, std::move(entry));
  }
  balancers_ = std::move(balancers);
  joined_ = std::move(joined);
  for (const auto& [name, listener] : active_listeners_) {
    auto http_stats = std::make_shared<HttpStatsByPrefix>();
    auto add_http_stats = [&](const config::FilterChain& chain) {
      if (const auto* http = std::get_if<config::HttpChain>(&chain.filter)) {
        (*http_stats)[http->stat_prefix] = stats_.Http(http->stat_prefix);
      }
    };
    for (const config::FilterChain& chain : listener.parsed->chains) add_http_stats(chain);
    if (listener.parsed->default_chain) add_http_stats(*listener.parsed->default_chain);
    config->listeners.emplace(
        name, ListenerEntry{listener.parsed, stats_.Listener(name), std::move(http_stats)});
    if (!listener.parsed->use_original_dst) {
      config->by_destination.emplace(listener.parsed->address, name);
    }
  }
  for (const auto& [name, routes] : routes_) config->routes.emplace(name, routes.parsed);
  auto dump = [&](XdsType type, const auto& applied) {
    TypeDump& d = config->dump[static_cast<size_t>(type)];
    d.version_info = acked_version_[static_cast<size_t>(type)];
    d.last_error = last_error_[static_cast<size_t>(type)];
    for (const auto& [name, resource] : applied) d.resources.push_back(resource.dump);
  };
  dump(XdsType::kCluster, clusters_);
  dump(XdsType::kEndpoint, endpoints_);
  dump(XdsType::kListener, listeners_);
  dump(XdsType::kRoute, routes_);
  config->initialized = initialized_;
  return config;
}

}  // namespace meshpilot::sidecar::xds
