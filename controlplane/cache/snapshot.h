#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/cache/resource.h"
#include "translator/translate.h"

namespace meshpilot::cache {

// Everything one class of proxies should have at one MeshState version. Immutable once
// built; Build() refuses an inconsistent set.
class Snapshot {
 public:
  using ResourceMap = std::map<std::string, ResourcePtr>;

  // Serializes each resource once and checks that every RDS name a listener references and
  // every EDS name a cluster references is present.
  static absl::StatusOr<std::shared_ptr<const Snapshot>> Build(
      const translator::ProxyResources& resources, uint64_t state_version);

  const ResourceMap& Resources(ResourceType type) const {
    return resources_[static_cast<size_t>(type)];
  }
  uint64_t state_version() const { return state_version_; }

 private:
  Snapshot() = default;

  std::array<ResourceMap, kResourceTypeCount> resources_;
  uint64_t state_version_ = 0;
};
using SnapshotPtr = std::shared_ptr<const Snapshot>;

}  // namespace meshpilot::cache
