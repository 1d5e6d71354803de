#pragma once

#include <cstdint>
#include <vector>

#include "controlplane/model/mesh_state.h"
#include "envoy/config/route/v3/route_components.pb.h"
#include "translator/destination_rule_index.h"
#include "translator/proxy.h"
#include "translator/traffic_policy.h"

namespace meshpilot::translator {

// What the routes of one virtual host depend on besides the VirtualService.
struct RouteContext {
  const model::MeshState& state;
  const ProxyInfo& proxy;
  const DestinationRuleIndex& rules;
  uint32_t port;  // the service port the requests arrive on
};

// Appends the Envoy routes of `vs`'s http rules, as istiod translates them: one route per
// match block (rules without matches match everything), skipping match blocks that do not
// apply to this proxy and port (sourceLabels, sourceNamespace, gateways, port). Returns true when the last route appended matches every request: routes after it
// would be unreachable, so the caller stops there, as istiod does.
bool AppendHttpRoutes(const model::VirtualService& vs, const RouteContext& context,
                      std::vector<envoy::config::route::v3::Route>& routes);

// The route a service port has without a VirtualService: everything to its cluster, with
// Istio's default retry policy on sidecars.
// The route of a service port no VirtualService shapes: to its cluster, with the hash policies
// of the DestinationRule's consistentHash (`policy`, the port's), so that it sticks.
envoy::config::route::v3::Route DefaultRoute(const std::string& cluster, const ProxyInfo& proxy,
                                             const ClusterTrafficPolicy& policy);

// The filter names routes refer to in typed_per_filter_config.
inline constexpr char kFaultFilter[] = "envoy.filters.http.fault";
inline constexpr char kCorsFilter[] = "envoy.filters.http.cors";

}  // namespace meshpilot::translator
