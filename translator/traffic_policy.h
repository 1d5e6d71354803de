#pragma once

#include <optional>
#include <vector>

#include "controlplane/model/destination_rule.h"
#include "controlplane/model/service.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/route/v3/route_components.pb.h"
#include "translator/proxy.h"

namespace meshpilot::translator {

// The DestinationRule settings that apply to one cluster (a service port, maybe a subset).
struct ClusterTrafficPolicy {
  std::optional<model::LoadBalancerSettings> load_balancer;
  std::optional<model::ConnectionPoolSettings> connection_pool;
  std::optional<model::OutlierDetection> outlier_detection;
  std::optional<model::ClientTlsSettings> tls;
};

// Istio's merge: the rule's policy; a subset's policy replaces it field by field; at each
// level a portLevelSettings entry for `port` replaces all four fields (unset ones fall back to
// the defaults, not to the enclosing level, as Istio documents).
ClusterTrafficPolicy ResolveTrafficPolicy(const model::DestinationRule* rule,
                                          const model::Subset* subset, uint32_t port);

// Writes the policy into an EDS cluster: load balancer, circuit breakers (Istio's defaults
// when unset), connect timeout, TCP keepalive, HTTP protocol options, outlier detection.
// Proxyless gRPC clients get only what gRPC's xDS client accepts: ROUND_ROBIN or RING_HASH
// and the max_requests circuit breaker.
void ApplyTrafficPolicy(const ClusterTrafficPolicy& policy, const model::ServicePort& port,
                        const ProxyInfo& proxy, envoy::config::cluster::v3::Cluster& cluster);

// Route hash policies for a consistentHash load balancer; empty otherwise.
std::vector<envoy::config::route::v3::RouteAction::HashPolicy> HashPolicies(
    const ClusterTrafficPolicy& policy);

}  // namespace meshpilot::translator
