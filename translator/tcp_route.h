#pragma once

#include "controlplane/model/mesh_state.h"
#include "envoy/config/listener/v3/listener_components.pb.h"
#include "translator/destination_rule_index.h"
#include "translator/proxy.h"
#include "translator/virtual_service_index.h"

namespace meshpilot::translator {

// Whether a tcp or tls match's predicates known at translation time fit this proxy and
// listener port (Istio's matchTCP/matchTLS): gateways (mesh), sourceLabels, sourceNamespace,
// port. destinationSubnets and sniHosts are the connection's, decided by the proxy or below.
bool MatchesProxy(const model::L4MatchAttributes& match, const ProxyInfo& proxy, uint32_t port);

// The tcp_proxy filter for `service`'s outbound `port` sending to `route`'s destinations
// (resolved in `config_namespace`; weight-0 ones dropped when others remain; a lone one gets
// everything), or to the service's own cluster when `route` is null. From the service's
// DestinationRule at this port: connectionPool.tcp.idleTimeout (Istio's default: 1h) and a
// consistentHash on useSourceIp (the tcp_proxy's source-IP hash policy).
envoy::config::listener::v3::Filter TcpProxyTo(const model::MeshState& state,
                                               const DestinationRuleIndex& rules,
                                               const model::Service& service, uint32_t port,
                                               const std::vector<model::RouteDestination>* route,
                                               const std::string& config_namespace);

// The tcp_proxy filter of the outbound listener for `service`'s TCP `port` (its clusterIP), as
// Istio shapes it: the first `tcp` rule of the service's VirtualServices with a match that
// applies to this proxy and port wins (no match list: it always applies); its destinations
// become the cluster, or weighted clusters. A match applies when it is bound to the mesh, its
// sourceLabels and sourceNamespace fit the proxy, its port is the listener's, and one of its
// destinationSubnets (if any) holds the clusterIP, the only destination this listener sees.
// Without such a rule, everything goes to the service's own cluster (see TcpProxyTo).
envoy::config::listener::v3::Filter OutboundTcpProxy(const model::MeshState& state,
                                                     const VirtualServiceIndex& virtual_services,
                                                     const DestinationRuleIndex& rules,
                                                     const ProxyInfo& proxy,
                                                     const model::Service& service, uint32_t port);

}  // namespace meshpilot::translator
