#include <map>

#include "translator/names.h"
#include "translator/translate.h"

namespace meshpilot::translator {
namespace {

using envoy::config::endpoint::v3::ClusterLoadAssignment;

// An endpoint serves a service port when the port names agree, as Kubernetes pairs them.
bool ServesPort(const model::Endpoint& endpoint, const model::ServicePort& port) {
  return endpoint.port_name == port.name;
}

ClusterLoadAssignment LoadAssignment(const std::string& cluster_name,
                                     const std::vector<model::Endpoint>& endpoints,
                                     const model::ServicePort& port) {
  // Grouped by locality: gRPC's xDS client requires it, and weights per locality let
  // locality-aware balancing be added without changing the shape.
  std::map<model::Locality, std::vector<const model::Endpoint*>> by_locality;
  for (const model::Endpoint& endpoint : endpoints) {
    if (endpoint.ready && ServesPort(endpoint, port)) {
      by_locality[endpoint.locality].push_back(&endpoint);
    }
  }
  ClusterLoadAssignment assignment;
  assignment.set_cluster_name(cluster_name);
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
  return assignment;
}

}  // namespace

std::vector<ClusterLoadAssignment> BuildLoadAssignments(const model::MeshState& state,
                                                        const ProxyInfo& proxy) {
  std::vector<ClusterLoadAssignment> assignments;
  for (const auto& [key, service] : state.services) {
    for (const model::ServicePort& port : service.ports) {
      if (port.protocol == model::Protocol::kUdp) continue;
      assignments.push_back(LoadAssignment(OutboundClusterName(port.port, "", service.Hostname()),
                                           state.EndpointsOf(service), port));
    }
  }
  std::sort(assignments.begin(), assignments.end(), [](const auto& a, const auto& b) {
    return a.cluster_name() < b.cluster_name();
  });
  return assignments;
}

}  // namespace meshpilot::translator
