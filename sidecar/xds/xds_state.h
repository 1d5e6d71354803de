#pragma once

// What meshproxy holds from xDS, independent of the transport: per type the applied resources
// (parsed, with their raw form and version), the last ACKed version, the names EDS and RDS
// must subscribe to, and the assembly of an immutable ProxyConfig from all of it.
//
// A response is applied resource by resource, as Envoy does: a resource that fails to parse
// is rejected alone (its previous version, if any, keeps serving) and the response is NACKed
// with every rejection's resource name and field path; valid resources in it still apply.
//
// Warming, as Envoy's: a listener whose HTTP connection manager's RouteConfiguration (RDS), or
// an EDS cluster whose ClusterLoadAssignment, has not arrived is not put into service (a new
// listener is not bound, a new cluster is unknown to routes); the version it replaces, if any,
// keeps serving. It goes into service when what it waits for arrives, or when its config
// source's initial_fetch_timeout (15 s by default) has passed.

#include <array>
#include <chrono>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "envoy/service/discovery/v3/discovery.pb.h"
#include "sidecar/proxy_config.h"
#include "sidecar/stats.h"

namespace meshpilot::sidecar::xds {

using SteadyTime = std::chrono::steady_clock::time_point;

// A resource waiting for what it needs: since when (this version), and until when at most.
struct Warming {
  const void* version = nullptr;
  SteadyTime since;
  std::optional<SteadyTime> deadline;  // none: until it arrives
};

class XdsState {
 public:
  explicit XdsState(StatsStore& stats) : stats_(stats) {}

  // Applies a state-of-the-world response. Returns the NACK's error_detail message, or "" to
  // ACK.
  std::string Apply(XdsType type, const envoy::service::discovery::v3::DiscoveryResponse& response);

  // Names to subscribe to: EDS and RDS by what the applied clusters and listeners need; CDS
  // and LDS are wildcard (empty).
  std::vector<std::string> Subscription(XdsType type) const;
  const std::string& AckedVersion(XdsType type) const {
    return acked_version_[static_cast<size_t>(type)];
  }
  bool Received(XdsType type) const { return received_[static_cast<size_t>(type)]; }

  // The config to serve: the applied resources that have warmed (as of `now`).
  std::shared_ptr<const ProxyConfig> Build(
      std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());
  // When the earliest initial_fetch_timeout of a warming resource passes; Build again then.
  std::optional<std::chrono::steady_clock::time_point> NextWarmingDeadline() const;

 private:
  template <typename T>
  struct Applied {
    std::shared_ptr<const T> parsed;
    AppliedResource dump;
  };
  template <typename Proto, typename T, typename ParseFn, typename NameFn>
  std::string ApplyType(XdsType type, const envoy::service::discovery::v3::DiscoveryResponse& response,
                        std::map<std::string, Applied<T>>& applied, ParseFn parse, NameFn name_of,
                        bool state_of_the_world);
  void PruneToSubscriptions();
  // Moves the applied resources that have warmed (or timed out warming) into service.
  void Warm(std::chrono::steady_clock::time_point now);

  StatsStore& stats_;
  std::map<std::string, Applied<config::ClusterConfig>> clusters_;
  std::map<std::string, Applied<config::EndpointSet>> endpoints_;
  std::map<std::string, Applied<config::ListenerConfig>> listeners_;
  std::map<std::string, Applied<config::RouteTable>> routes_;
  // In service (warmed): the latest warmed version of each applied cluster and listener.
  std::map<std::string, Applied<config::ClusterConfig>> active_clusters_;
  std::map<std::string, Applied<config::ListenerConfig>> active_listeners_;
  std::map<std::string, Warming> warming_clusters_;
  std::map<std::string, Warming> warming_listeners_;
  bool initialized_ = false;
  std::array<std::string, 4> acked_version_;
  std::array<std::string, 4> last_error_;
  std::array<bool, 4> received_{};

  // Load balancers survive a rebuild when neither their cluster nor its endpoints changed, so
  // round-robin positions and active request counts carry over.
  struct BalancerKey {
    std::shared_ptr<const config::ClusterConfig> cluster;
    std::shared_ptr<const config::EndpointSet> endpoints;
    std::shared_ptr<const upstream::LoadBalancer> lb;
  };
  std::map<std::string, BalancerKey> balancers_;
  // Clusters with slow start: when each of their endpoints joined (was first seen healthy),
  // kept across EDS updates while the endpoint stays; one that leaves and returns joins anew.
  std::map<std::string, std::map<boost::asio::ip::tcp::endpoint, SteadyTime>> joined_;
};

}  // namespace meshpilot::sidecar::xds
