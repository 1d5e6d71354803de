#pragma once

#include <set>
#include <string>
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

// The whole translation: pure, no I/O, deterministic for equal inputs. It is the union of two
// parts, so that what many proxies share is built and serialized once:
ProxyResources Translate(const model::MeshState& state, const ProxyInfo& proxy);

// The outbound part: clusters, endpoints, outbound listeners and routes. Equal for proxies with
// equal OutboundKey.
ProxyResources TranslateOutbound(const model::MeshState& state, const ProxyInfo& proxy);
// The proxy's own workload as a server: virtualInbound and inbound clusters for sidecars,
// grpc/server listeners for proxyless gRPC. Depends on the proxy's IP and labels.
ProxyResources TranslateWorkload(const model::MeshState& state, const ProxyInfo& proxy);

// The label keys outbound translation looks at: those some VirtualService sourceLabels or
// DestinationRule workloadSelector names. Computed once per state.
std::set<std::string> OutboundLabelKeys(const model::MeshState& state);
// Proxies with equal keys get equal TranslateOutbound: generator, namespace, gRPC quirks, locality
// and the proxy's labels restricted to `label_keys`.
std::string OutboundKey(const ProxyInfo& proxy, const std::set<std::string>& label_keys);

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
