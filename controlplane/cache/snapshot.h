#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/cache/resource.h"
#include "translator/translate.h"

namespace meshpilot::cache {

using ResourceMap = std::map<std::string, ResourcePtr>;

// The serialized resources of one translation (or part of one), with the RDS and EDS names
// they depend on, so that parts can be combined and checked without parsing them again.
struct ResourceSet {
  std::array<ResourceMap, kResourceTypeCount> resources;
  // RDS names the listeners fetch and EDS names the clusters fetch, each with the name of one
  // resource that needs it (for the error message).
  std::map<std::string, std::string> required_routes;
  std::map<std::string, std::string> required_endpoints;

  // Serializes each resource once. Fails on two resources of one type with one name.
  static absl::StatusOr<ResourceSet> Serialize(const translator::ProxyResources& resources);
};

// Everything one proxy should have at one MeshState version. Immutable once built; Build()
// refuses an inconsistent set.
class Snapshot {
 public:
  using ResourceMap = cache::ResourceMap;

  // Combines parts (a resource name may appear in one part only) and checks that every RDS
  // name a listener references and every EDS name a cluster references is present.
  static absl::StatusOr<std::shared_ptr<const Snapshot>> Build(
      std::initializer_list<const ResourceSet*> parts, uint64_t state_version);
  // The same for a whole translation.
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
