#pragma once

#include "controlplane/convert/yaml_reader.h"
#include "controlplane/model/destination_rule.h"

namespace meshpilot::convert {

// Reads the spec of a DestinationRule, validated by Istio's rules; problems go to the reader's
// ValidationErrors with their field paths.
model::DestinationRule ReadDestinationRule(MapReader& object, model::ObjectMeta meta);

}  // namespace meshpilot::convert
