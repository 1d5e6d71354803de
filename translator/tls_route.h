#pragma once

#include <vector>

#include "controlplane/model/mesh_state.h"
#include "envoy/config/listener/v3/listener_components.pb.h"
#include "translator/destination_rule_index.h"
#include "translator/proxy.h"
#include "translator/virtual_service_index.h"

namespace meshpilot::translator {

// The filter chains of the outbound listener for `service`'s HTTPS/TLS `port` (its
// clusterIP), as Istio builds them (buildSidecarOutboundTLSFilterChainOpts): one chain per
// `tls` match of the service's VirtualServices that applies to this proxy and port (see
// MatchesProxy), matching the ClientHello's SNI on its sniHosts (`server_names`, as written)
// and the destination on its destinationSubnets (`prefix_ranges`), with a tcp_proxy to the
// rule's (weighted) destinations; a match whose sniHosts and destinationSubnets an earlier one
// already has is unreachable and left out. Without any such match, one chain without a match
// sends everything to the service's own cluster: the listener is bound to the clusterIP, so
// the destination already names the service (Istio matches the hostname as SNI only for
// services without a VIP, which get no listener here). `tcp` rules do not apply to TLS ports.
std::vector<envoy::config::listener::v3::FilterChain> OutboundTlsChains(
    const model::MeshState& state, const VirtualServiceIndex& virtual_services,
    const DestinationRuleIndex& rules, const ProxyInfo& proxy, const model::Service& service,
    uint32_t port);

}  // namespace meshpilot::translator
