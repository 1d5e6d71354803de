#include "controlplane/source/kube/json_yaml.h"

#include <string>

namespace meshpilot::source {

YAML::Node JsonToYaml(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::object: {
      YAML::Node map(YAML::NodeType::Map);
      for (const auto& [key, item] : value.items()) map[key] = JsonToYaml(item);
      return map;
    }
    case nlohmann::json::value_t::array: {
      YAML::Node sequence(YAML::NodeType::Sequence);
      for (const nlohmann::json& item : value) sequence.push_back(JsonToYaml(item));
      return sequence;
    }
    case nlohmann::json::value_t::string: {
      YAML::Node scalar(value.get<std::string>());
      scalar.SetTag("!");  // what a parser gives a quoted scalar: a string, whatever it reads
      return scalar;
    }
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
      return YAML::Node(YAML::NodeType::Null);
    default:  // numbers and booleans print as YAML reads them back
      return YAML::Node(value.dump());
  }
}

}  // namespace meshpilot::source
