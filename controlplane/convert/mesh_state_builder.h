#pragma once

#include <vector>

#include "absl/types/span.h"
#include "controlplane/convert/object.h"
#include "controlplane/model/mesh_state.h"

namespace meshpilot::convert {

// Assembles the MeshState the translator reads from the accepted objects of a source and
// the errors of the objects it rejected. Objects are indexed by "namespace/name" (namespaces
// by name); of two objects with the same kind and key, the first wins and the second is
// reported. Endpoints are flattened to one model::Endpoint per address and port, joined
// with the Pod their targetRef (or, lacking one, their address) names, and sorted by address
// then port. Like Istio, a Service with EndpointSlices takes its endpoints from them alone.
// The version is left at 0 for the source to set.
model::MeshState BuildMeshState(absl::Span<const SourcedObject> objects,
                                std::vector<model::ConfigError> errors);

}  // namespace meshpilot::convert
