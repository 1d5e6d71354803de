#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace meshpilot::model {

// Istio's config root namespace (meshConfig.rootNamespace): its configs apply mesh-wide.
inline constexpr std::string_view kRootNamespace = "istio-system";

// The Kubernetes metadata meshpilot keeps for every object it ingests.
struct ObjectMeta {
  std::string name;
  std::string namespace_;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string resource_version;
  int64_t generation = 0;

  // "namespace/name": the key objects of one kind are indexed by.
  std::string Key() const { return namespace_ + "/" + name; }
};

}  // namespace meshpilot::model
