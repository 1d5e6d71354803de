#include "controlplane/cache/snapshot.h"

#include "absl/strings/str_cat.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"

namespace meshpilot::cache {
namespace {

using envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;

// The RDS names a listener depends on, from its filter chains and its api_listener.
std::vector<std::string> ReferencedRoutes(const envoy::config::listener::v3::Listener& listener) {
  std::vector<std::string> names;
  auto collect = [&names](const google::protobuf::Any& config) {
    HttpConnectionManager hcm;
    if (config.UnpackTo(&hcm) && hcm.has_rds()) names.push_back(hcm.rds().route_config_name());
  };
  if (listener.has_api_listener()) collect(listener.api_listener().api_listener());
  auto scan = [&collect](const envoy::config::listener::v3::FilterChain& chain) {
    for (const auto& filter : chain.filters()) {
      if (filter.has_typed_config()) collect(filter.typed_config());
    }
  };
  for (const auto& chain : listener.filter_chains()) scan(chain);
  if (listener.has_default_filter_chain()) scan(listener.default_filter_chain());
  return names;
}

template <typename Message, typename NameOf>
absl::Status Insert(Snapshot::ResourceMap& map, const std::vector<Message>& messages,
                    NameOf name_of, ResourceType type) {
  for (const Message& message : messages) {
    std::string name = name_of(message);
    if (!map.emplace(name, MakeResource(name, message)).second) {
      return absl::InternalError(absl::StrCat(std::string(ShortName(type)), ": duplicate resource ", name));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SnapshotPtr> Snapshot::Build(const translator::ProxyResources& resources,
                                            uint64_t state_version) {
  std::shared_ptr<Snapshot> snapshot(new Snapshot());
  snapshot->state_version_ = state_version;
  auto& r = snapshot->resources_;
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
    const std::string& eds_name = cluster.eds_cluster_config().service_name().empty()
                                      ? cluster.name()
                                      : cluster.eds_cluster_config().service_name();
    if (!snapshot->Resources(ResourceType::kEndpoint).contains(eds_name)) {
      return absl::InternalError(
          absl::StrCat("cluster ", cluster.name(), " references missing endpoints ", eds_name));
    }
  }
  for (const auto& listener : resources.listeners) {
    for (const std::string& route : ReferencedRoutes(listener)) {
      if (!snapshot->Resources(ResourceType::kRoute).contains(route)) {
        return absl::InternalError(
            absl::StrCat("listener ", listener.name(), " references missing route ", route));
      }
    }
  }
  return snapshot;
}

}  // namespace meshpilot::cache
