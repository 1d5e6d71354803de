#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/model/mesh_state.h"

// Istio's naming conventions, in one place, so every generator agrees on them.
namespace meshpilot::translator {

inline constexpr std::string_view kPassthroughCluster = "PassthroughCluster";
inline constexpr std::string_view kBlackHoleCluster = "BlackHoleCluster";
inline constexpr std::string_view kVirtualOutbound = "virtualOutbound";
inline constexpr uint32_t kVirtualOutboundPort = 15001;
using model::kRootNamespace;

// outbound|PORT|SUBSET|FQDN
std::string OutboundClusterName(uint32_t port, const std::string& subset,
                                const std::string& hostname);

// The host forms a client in `client_namespace` may use for a service, most specific first:
// FQDN, name.ns.svc, name.ns, the short name (same namespace only) and the clusterIP.
std::vector<std::string> HostAliases(const model::Service& service,
                                     std::string_view client_namespace);

// A host as written in Istio config, made fully qualified the way Istio does: a name without
// dots is a Service in the config's namespace (`reviews` in `default` is
// reviews.default.svc.cluster.local); anything with a dot, and wildcards, stay as written.
std::string ResolveHost(std::string_view host, std::string_view config_namespace);

// Whether `hostname` (a service FQDN) falls under `pattern`, which may be a wildcard
// (`*.default.svc.cluster.local`, `*`).
bool HostMatches(std::string_view hostname, std::string_view pattern);

// How specific a matching pattern is: an exact host beats every wildcard, a longer wildcard
// beats a shorter one (as Envoy picks virtual hosts).
size_t HostSpecificity(std::string_view pattern);

// Istio's exportTo: empty or "*" is every namespace, "." the config's own, "~" none.
bool IsExportedTo(const std::vector<std::string>& export_to, std::string_view config_namespace,
                  std::string_view client_namespace);

// The Service a fully qualified `name.ns.svc.cluster.local` names, or nullptr.
const model::Service* FindServiceByHostname(const model::MeshState& state,
                                            std::string_view hostname);

}  // namespace meshpilot::translator
