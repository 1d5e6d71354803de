#include "controlplane/cache/resource.h"

#include <openssl/evp.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace meshpilot::cache {
namespace {

constexpr std::array<std::string_view, kResourceTypeCount> kTypeUrls = {
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
};
constexpr std::array<std::string_view, kResourceTypeCount> kShortNames = {"cds", "eds", "lds",
                                                                          "rds"};

std::string DeterministicBytes(const google::protobuf::Message& message) {
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

}  // namespace

std::string_view TypeUrl(ResourceType type) { return kTypeUrls[static_cast<size_t>(type)]; }

std::optional<ResourceType> TypeFromUrl(std::string_view type_url) {
  for (ResourceType type : kPushOrder) {
    if (TypeUrl(type) == type_url) return type;
  }
  return std::nullopt;
}

std::string_view ShortName(ResourceType type) { return kShortNames[static_cast<size_t>(type)]; }

bool IsWildcardType(ResourceType type) {
  return type == ResourceType::kCluster || type == ResourceType::kListener;
}

std::string ContentHash(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), 8));
}

ResourcePtr MakeResource(std::string name, const google::protobuf::Message& message) {
  auto resource = std::make_shared<Resource>();
  resource->name = std::move(name);
  std::string bytes = DeterministicBytes(message);
  resource->version = ContentHash(bytes);
  resource->body.set_type_url(absl::StrCat("type.googleapis.com/", message.GetTypeName()));
  resource->body.set_value(std::move(bytes));
  return resource;
}

}  // namespace meshpilot::cache
