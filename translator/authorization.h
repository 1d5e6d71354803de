#pragma once

#include <map>
#include <string>
#include <vector>

#include "controlplane/model/mesh_state.h"
#include "translator/proxy.h"
#include "translator/rbac.h"

// Which AuthorizationPolicies apply to which workload, as Istio decides it.
namespace meshpilot::translator {

// Whether `policy` applies to a workload of `workload_namespace` with `labels`: policies in
// the root namespace (istio-system) apply mesh-wide, others to their namespace; no selector
// selects every workload there, a selector those whose labels include its matchLabels.
// Policies with targetRef(s) bind to gateways and waypoints (and, for kind Service, to the
// Service's waypoint), never to sidecars or proxyless workloads, so they select none here.
bool SelectsWorkload(const model::AuthorizationPolicy& policy,
                     const std::string& workload_namespace,
                     const std::map<std::string, std::string>& labels);

// The policies selecting the proxy's workload (its namespace and ProxyInfo::labels), by
// action, in namespace/name order.
SelectedPolicies SelectPolicies(const model::MeshState& state, const ProxyInfo& proxy);

// What translation accepts but cannot fully honour in AuthorizationPolicies, one warning per
// finding: CUSTOM (no ext-authz provider: its rules deny), AUDIT (no effect), targetRefs (no
// gateways or waypoints), mTLS identities (principals, namespaces, serviceAccounts: cannot
// match until mTLS exists), JWT attributes (requestPrincipals, request.auth.*: cannot match
// until JWT exists), experimental attributes, and HTTP-only fields, which TCP ports evaluate
// as Istio does (the rule is dropped for ALLOW, those fields ignored for DENY).
std::vector<model::ConfigError> CheckAuthorizationPolicies(const model::MeshState& state);

}  // namespace meshpilot::translator
