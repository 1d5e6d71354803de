#pragma once

#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace meshpilot::source {

// The YAML node a YAML parser would build from this JSON text (JSON is YAML), without
// printing and parsing it again: what convert::ParseObject reads.
YAML::Node JsonToYaml(const nlohmann::json& value);

}  // namespace meshpilot::source
