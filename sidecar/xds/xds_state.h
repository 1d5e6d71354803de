#pragma once

// What meshproxy holds from xDS, independent of the transport: per type the applied resources
// (parsed, with their raw form and version), the last ACKed version, the names EDS and RDS
// must subscribe to, and the assembly of an immutable ProxyConfig from all of it.
//
// A response is applied resource by resource, as Envoy does: a resource that fails to parse
// is rejected alone (its previous version, if any, keeps serving) and the response is NACKed
// with every rejection's resource name and field path; valid resources in it still apply.

#include <array>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "envoy/service/discovery/v3/discovery.pb.h"
#include "sidecar/proxy_config.h"
#include "sidecar/stats.h"

namespace meshpilot::sidecar::xds {

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

  std::shared_ptr<const ProxyConfig> Build();

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

  StatsStore& stats_;
  std::map<std::string, Applied<config::ClusterConfig>> clusters_;
  std::map<std::string, Applied<config::EndpointSet>> endpoints_;
  std::map<std::string, Applied<config::ListenerConfig>> listeners_;
  std::map<std::string, Applied<config::RouteTable>> routes_;
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
};

}  // namespace meshpilot::sidecar::xds
