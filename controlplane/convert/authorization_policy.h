#pragma once

#include "controlplane/convert/yaml_reader.h"
#include "controlplane/model/authorization_policy.h"

namespace meshpilot::convert {

// Reads the spec of a AuthorizationPolicy, validated by Istio's rules; problems go to the reader's
// ValidationErrors with their field paths.
model::AuthorizationPolicy ReadAuthorizationPolicy(MapReader& object, model::ObjectMeta meta);

}  // namespace meshpilot::convert
