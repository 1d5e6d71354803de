#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/model/service.h"

// Istio's naming conventions, in one place, so every generator agrees on them.
namespace meshpilot::translator {

inline constexpr std::string_view kPassthroughCluster = "PassthroughCluster";
inline constexpr std::string_view kBlackHoleCluster = "BlackHoleCluster";
inline constexpr std::string_view kVirtualOutbound = "virtualOutbound";
inline constexpr uint32_t kVirtualOutboundPort = 15001;

// outbound|PORT|SUBSET|FQDN
std::string OutboundClusterName(uint32_t port, const std::string& subset,
                                const std::string& hostname);

// The host forms a client in `client_namespace` may use for a service, most specific first:
// FQDN, name.ns.svc, name.ns, the short name (same namespace only) and the clusterIP.
std::vector<std::string> HostAliases(const model::Service& service,
                                     std::string_view client_namespace);

}  // namespace meshpilot::translator
