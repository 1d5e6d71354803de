#include "controlplane/cache/snapshot.h"

#include "absl/strings/str_cat.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"

namespace meshpilot::cache {
namespace {

using envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;

// The RDS names a listener depends on, from its filter chains and its api_listener.
void CollectRoutes(const envoy::config::listener::v3::Listener& listener,
                   std::map<std::string, std::string>& names) {
  auto collect = [&](const google::protobuf::Any& config) {
    HttpConnectionManager hcm;
    if (config.UnpackTo(&hcm) && hcm.has_rds()) {
      names.emplace(hcm.rds().route_config_name(), listener.name());
    }
  };
  if (listener.has_api_listener()) collect(listener.api_listener().api_listener());
  auto scan = [&collect](const envoy::config::listener::v3::FilterChain& chain) {
    for (const auto& filter : chain.filters()) {
      if (filter.has_typed_config()) collect(filter.typed_config());
    }
  };
  for (const auto& chain : listener.filter_chains()) scan(chain);
  if (listener.has_default_filter_chain()) scan(listener.default_filter_chain());
}

template <typename Message, typename NameOf>
absl::Status Insert(ResourceMap& map, const std::vector<Message>& messages, NameOf name_of,
                    ResourceType type) {
  for (const Message& message : messages) {
    std::string name = name_of(message);
    if (!map.emplace(name, MakeResource(name, message)).second) {
      return absl::InternalError(
          absl::StrCat(std::string(ShortName(type)), ": duplicate resource ", name));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ResourceSet> ResourceSet::Serialize(const translator::ProxyResources& resources) {
  ResourceSet set;
  auto& r = set.resources;
  auto by_name = [](const auto& m) { return m.name(); };
  auto by_cluster_name = [](const auto& m) { return m.cluster_name(); };
  absl::Status status = Insert(r[0], resources.clusters, by_name, ResourceType::kCluster);
  if (status.ok())
    status = Insert(r[1], resources.endpoints, by_cluster_name, ResourceType::kEndpoint);
  if (status.ok()) status = Insert(r[2], resources.listeners, by_name, ResourceType::kListener);
  if (status.ok()) status = Insert(r[3], resources.routes, by_name, ResourceType::kRoute);
  if (!status.ok()) return status;

  for (const auto& cluster : resources.clusters) {
    if (cluster.type() != envoy::config::cluster::v3::Cluster::EDS) continue;
    const std::string& service_name = cluster.eds_cluster_config().service_name();
    set.required_endpoints.emplace(service_name.empty() ? cluster.name() : service_name,
                                   cluster.name());
  }
  for (const auto& listener : resources.listeners) CollectRoutes(listener, set.required_routes);
  return set;
}

absl::StatusOr<SnapshotPtr> Snapshot::Build(std::initializer_list<const ResourceSet*> parts,
                                            uint64_t state_version) {
  std::shared_ptr<Snapshot> snapshot(new Snapshot());
  snapshot->state_version_ = state_version;
  for (const ResourceSet* part : parts) {
    for (ResourceType type : kPushOrder) {
      ResourceMap& into = snapshot->resources_[static_cast<size_t>(type)];
      for (const auto& [name, resource] : part->resources[static_cast<size_t>(type)]) {
        if (!into.emplace(name, resource).second) {
          return absl::InternalError(
              absl::StrCat(std::string(ShortName(type)), ": duplicate resource ", name));
        }
      }
    }
  }
  for (const ResourceSet* part : parts) {
    for (const auto& [name, cluster] : part->required_endpoints) {
      if (!snapshot->Resources(ResourceType::kEndpoint).contains(name)) {
        return absl::InternalError(
            absl::StrCat("cluster ", cluster, " references missing endpoints ", name));
      }
    }
    for (const auto& [name, listener] : part->required_routes) {
      if (!snapshot->Resources(ResourceType::kRoute).contains(name)) {
        return absl::InternalError(
            absl::StrCat("listener ", listener, " references missing route ", name));
      }
    }
  }
  return snapshot;
}

absl::StatusOr<SnapshotPtr> Snapshot::Build(const translator::ProxyResources& resources,
                                            uint64_t state_version) {
  absl::StatusOr<ResourceSet> set = ResourceSet::Serialize(resources);
  if (!set.ok()) return set.status();
  return Build({&*set}, state_version);
}

}  // namespace meshpilot::cache
