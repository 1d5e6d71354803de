#include <map>

#include "translator/locality.h"
#include "translator/names.h"
#include "translator/subset.h"
#include "translator/translate.h"

namespace meshpilot::translator {
namespace {

using envoy::config::endpoint::v3::ClusterLoadAssignment;

// An endpoint serves a service port when the port names agree, as Kubernetes pairs them.
bool ServesPort(const model::Endpoint& endpoint, const model::ServicePort& port) {
  return endpoint.port_name == port.name;
}

// The endpoints of one outbound cluster: the ready endpoints of its service port, narrowed to
// a subset's labels; none for a subset no DestinationRule defines.
ClusterLoadAssignment LoadAssignment(const OutboundCluster& cluster,
                                     const std::vector<model::Endpoint>& endpoints,
                                     const ProxyInfo& proxy) {
  const model::ServicePort& port = *cluster.port;
  // Grouped by locality: gRPC's xDS client requires it, and locality load balancing sets
  // their weights and priorities.
  std::map<model::Locality, std::vector<const model::Endpoint*>> by_locality;
  for (const model::Endpoint& endpoint : endpoints) {
    if (cluster.undefined_subset) break;
    if (cluster.selector && !SelectsEndpoint(*cluster.selector, endpoint)) continue;
    if (endpoint.ready && ServesPort(endpoint, port)) {
      by_locality[endpoint.locality].push_back(&endpoint);
    }
  }
  ClusterLoadAssignment assignment;
  assignment.set_cluster_name(cluster.name);
  for (const auto& [locality, members] : by_locality) {
    auto* group = assignment.add_endpoints();
    group->mutable_locality()->set_region(locality.region);
    group->mutable_locality()->set_zone(locality.zone);
    group->mutable_locality()->set_sub_zone(locality.subzone);
    group->mutable_load_balancing_weight()->set_value(members.size());
    for (const model::Endpoint* endpoint : members) {
      auto* lb_endpoint = group->add_lb_endpoints();
      auto* address = lb_endpoint->mutable_endpoint()->mutable_address()->mutable_socket_address();
      address->set_address(endpoint->address);
      address->set_port_value(endpoint->port);
      lb_endpoint->set_health_status(envoy::config::core::v3::HEALTHY);
      lb_endpoint->mutable_load_balancing_weight()->set_value(1);
    }
  }
  ApplyLocalityLb(cluster.policy, proxy.locality, assignment);
  return assignment;
}

}  // namespace

std::vector<ClusterLoadAssignment> BuildLoadAssignments(const model::MeshState& state,
                                                        const ProxyInfo& proxy) {
  std::vector<ClusterLoadAssignment> assignments;
  // Sorted by name already. PASSTHROUGH clusters (ORIGINAL_DST) need no assignment, but one
  // that nothing references is harmless and keeps this independent of the cluster settings.
  for (const OutboundCluster& cluster : BuildOutboundClusters(state, proxy)) {
    assignments.push_back(LoadAssignment(cluster, state.EndpointsOf(*cluster.service), proxy));
  }
  return assignments;
}

}  // namespace meshpilot::translator
