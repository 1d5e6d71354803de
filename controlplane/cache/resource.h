#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "google/protobuf/any.pb.h"

namespace meshpilot::cache {

// The xDS types meshpilot serves, in the order a push sends them: Envoy needs clusters
// before their endpoints, and listeners before their routes.
enum class ResourceType { kCluster = 0, kEndpoint = 1, kListener = 2, kRoute = 3 };
inline constexpr std::array<ResourceType, 4> kPushOrder = {
    ResourceType::kCluster, ResourceType::kEndpoint, ResourceType::kListener,
    ResourceType::kRoute};
inline constexpr size_t kResourceTypeCount = kPushOrder.size();

std::string_view TypeUrl(ResourceType type);
std::optional<ResourceType> TypeFromUrl(std::string_view type_url);
// "cds", "eds", "lds", "rds": the short names Istio's metrics and debug pages use.
std::string_view ShortName(ResourceType type);
// Wildcard types (LDS, CDS) send their full set; the others are named subscriptions.
bool IsWildcardType(ResourceType type);

// One serialized resource, shared by every snapshot and stream that holds it.
struct Resource {
  std::string name;
  // A hash of the deterministic serialization: equal content, equal version, across restarts
  // and replicas.
  std::string version;
  google::protobuf::Any body;
};
using ResourcePtr = std::shared_ptr<const Resource>;

// Packs and serializes `message` once and derives its version from the bytes.
ResourcePtr MakeResource(std::string name, const google::protobuf::Message& message);

// A stable 64-bit content hash as 16 hex digits (SHA-256, truncated).
std::string ContentHash(std::string_view bytes);

}  // namespace meshpilot::cache
