#pragma once

#include <vector>

#include "controlplane/model/mesh_state.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "translator/proxy.h"

namespace meshpilot::translator {

// Everything one proxy should have, per xDS type, each list sorted by resource name.
struct ProxyResources {
  std::vector<envoy::config::cluster::v3::Cluster> clusters;
  std::vector<envoy::config::endpoint::v3::ClusterLoadAssignment> endpoints;
  std::vector<envoy::config::listener::v3::Listener> listeners;
  std::vector<envoy::config::route::v3::RouteConfiguration> routes;
};

// The whole translation: pure, no I/O, deterministic for equal inputs.
ProxyResources Translate(const model::MeshState& state, const ProxyInfo& proxy);

// What translation accepts but cannot fully honour, per object (unsupported fields, merged
// VirtualServices, destinations that name no Service, ...): warnings for status and debug.
std::vector<model::ConfigError> CheckConfig(const model::MeshState& state);

// One generator per xDS type (cluster.cc, endpoint.cc, listener.cc, route.cc).
std::vector<envoy::config::cluster::v3::Cluster> BuildClusters(const model::MeshState& state,
                                                               const ProxyInfo& proxy);
std::vector<envoy::config::endpoint::v3::ClusterLoadAssignment> BuildLoadAssignments(
    const model::MeshState& state, const ProxyInfo& proxy);
std::vector<envoy::config::listener::v3::Listener> BuildListeners(const model::MeshState& state,
                                                                  const ProxyInfo& proxy);
std::vector<envoy::config::route::v3::RouteConfiguration> BuildRouteConfigurations(
    const model::MeshState& state, const ProxyInfo& proxy);

}  // namespace meshpilot::translator
