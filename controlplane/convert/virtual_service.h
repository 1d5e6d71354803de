#pragma once

#include "controlplane/convert/yaml_reader.h"
#include "controlplane/model/virtual_service.h"

namespace meshpilot::convert {

// Reads the spec of a VirtualService, validated by Istio's rules; problems go to the reader's
// ValidationErrors with their field paths.
model::VirtualService ReadVirtualService(MapReader& object, model::ObjectMeta meta);

}  // namespace meshpilot::convert
