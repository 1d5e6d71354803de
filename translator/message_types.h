#pragma once

#include "controlplane/model/mesh_state.h"

namespace meshpilot::translator {

// The kinds of warning CheckConfig reports: Istio's analyzer messages where one says the same
// thing (https://istio.io/latest/docs/reference/config/analysis/), meshpilot's own otherwise.
inline const model::MessageType kReferencedResourceNotFound{"ReferencedResourceNotFound",
                                                            "IST0101"};
inline const model::MessageType kConflictingMeshGatewayVirtualServiceHosts{
    "ConflictingMeshGatewayVirtualServiceHosts", "IST0109"};
inline const model::MessageType kVirtualServiceUnreachableRule{"VirtualServiceUnreachableRule",
                                                               "IST0130"};
// A field meshpilot accepts but does not implement (yet), or that needs what it does not serve
// (gateways, mTLS identities, JWT, ext-authz).
inline const model::MessageType kNotSupported{"NotSupported", ""};
// An AuthorizationPolicy rule with HTTP-only fields that also applies to TCP ports, where
// Istio drops it (ALLOW) or ignores those fields (DENY).
inline const model::MessageType kHttpOnlyRuleOnTcp{"HttpOnlyRuleOnTcp", ""};

// Several DestinationRules for one host in one namespace, merged as Istio merges them.
inline const model::MessageType kMergedDestinationRules{"MergedDestinationRules", ""};

}  // namespace meshpilot::translator
