#pragma once

#include <map>
#include <string>
#include <vector>

#include "controlplane/model/mesh_state.h"
#include "translator/proxy.h"
#include "translator/traffic_policy.h"

namespace meshpilot::translator {

// One outbound cluster a proxy gets: a service port, or a DestinationRule subset of it
// (`outbound|PORT|SUBSET|FQDN`), with the traffic policy that applies to it.
struct OutboundCluster {
  std::string name;
  const model::Service* service = nullptr;
  const model::ServicePort* port = nullptr;
  std::string subset;  // "" for the service port itself
  // The subset's labels, which endpoints (by their Pod's labels) must carry; none: all.
  std::optional<std::map<std::string, std::string>> selector;
  // A subset some route names but no DestinationRule defines. Istio routes to a cluster
  // that does not exist (503); meshpilot sends a cluster without endpoints, which fails the
  // same way and keeps every name a route references present (gRPC clients would otherwise
  // wait for it).
  bool undefined_subset = false;
  ClusterTrafficPolicy policy;
};

// Every outbound cluster of `proxy`, sorted by name: each TCP/HTTP service port, each subset
// of the DestinationRule that applies to it, and each undefined subset a visible
// VirtualService routes or mirrors to.
std::vector<OutboundCluster> BuildOutboundClusters(const model::MeshState& state,
                                                   const ProxyInfo& proxy);

// Where a route destination goes when the request arrived on `listener_port` (Istio's rule:
// the destination's port, else the service's only port, else the listener port).
struct ResolvedDestination {
  std::string cluster;
  const model::Service* service = nullptr;  // nullptr: the host is no known Service
  uint32_t port = 0;
};
ResolvedDestination ResolveDestination(const model::MeshState& state,
                                       const model::Destination& destination,
                                       const std::string& config_namespace,
                                       uint32_t listener_port);

// Whether an endpoint's labels carry every label of a subset selector.
bool SelectsEndpoint(const std::map<std::string, std::string>& selector,
                     const model::Endpoint& endpoint);

}  // namespace meshpilot::translator
