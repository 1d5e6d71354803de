#include "controlplane/convert/mesh_state_builder.h"

#include <algorithm>
#include <string>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace meshpilot::convert {
namespace {

template <typename... Handlers>
struct Overloaded : Handlers... {
  using Handlers::operator()...;
};
template <typename... Handlers>
Overloaded(Handlers...) -> Overloaded<Handlers...>;

std::string KeyOf(const KubeObject& object) {
  const model::ObjectMeta& meta = MetaOf(object);
  return std::holds_alternative<model::Namespace>(object) ? meta.name : meta.Key();
}

// Joins endpoints with their pods, as Istio does: by targetRef, or by address when the
// endpoint names no pod.
class PodIndex {
 public:
  explicit PodIndex(const std::map<std::string, model::Pod>& pods) : pods_(pods) {
    for (const auto& [key, pod] : pods) {
      if (!pod.ip.empty()) by_ip_.emplace(pod.ip, &pod);
    }
  }

  const model::Pod* Find(const ServiceEndpoints::Address& address) const {
    if (!address.pod_name.empty()) {
      auto it = pods_.find(absl::StrCat(address.pod_namespace, "/", address.pod_name));
      return it == pods_.end() ? nullptr : &it->second;
    }
    auto it = by_ip_.find(address.ip);
    return it == by_ip_.end() ? nullptr : it->second;
  }

 private:
  const std::map<std::string, model::Pod>& pods_;
  absl::flat_hash_map<std::string, const model::Pod*> by_ip_;
};

model::Endpoint MakeEndpoint(const ServiceEndpoints& endpoints,
                             const ServiceEndpoints::Address& address,
                             const ServiceEndpoints::Port& port, const PodIndex& pods) {
  model::Endpoint endpoint;
  endpoint.address = address.ip;
  endpoint.port = port.port;
  endpoint.port_name = port.name;
  endpoint.ready = address.ready;
  endpoint.pod_name = address.pod_name;
  endpoint.namespace_ =
      address.pod_namespace.empty() ? endpoints.meta.namespace_ : address.pod_namespace;
  if (const model::Pod* pod = pods.Find(address)) {
    endpoint.labels = pod->meta.labels;
    endpoint.locality = pod->locality;
    endpoint.pod_name = pod->meta.name;
    endpoint.namespace_ = pod->meta.namespace_;
    endpoint.service_account = pod->service_account;
  }
  // Without locality labels on the pod, the slice's zone is all that is known.
  if (endpoint.locality == model::Locality{}) endpoint.locality.zone = address.zone;
  return endpoint;
}

void SortAndDeduplicate(std::vector<model::Endpoint>& endpoints) {
  auto key = [](const model::Endpoint& e) { return std::tie(e.address, e.port, e.port_name); };
  std::stable_sort(endpoints.begin(), endpoints.end(),
                   [&](const auto& a, const auto& b) { return key(a) < key(b); });
  // A pod moving between slices shows up in both for a moment.
  endpoints.erase(std::unique(endpoints.begin(), endpoints.end(),
                              [&](const auto& a, const auto& b) { return key(a) == key(b); }),
                  endpoints.end());
}

}  // namespace

model::MeshState BuildMeshState(absl::Span<const SourcedObject> objects,
                                std::vector<model::ConfigError> errors) {
  model::MeshState state;
  state.errors = std::move(errors);
  absl::flat_hash_map<std::string, std::string> origins;  // "Kind/key" -> origin
  std::vector<const ServiceEndpoints*> endpoint_objects;
  absl::flat_hash_set<std::string> services_with_slices;

  for (const SourcedObject& sourced : objects) {
    absl::string_view kind = KindOf(sourced.object);
    std::string key = KeyOf(sourced.object);
    auto [first, inserted] = origins.emplace(absl::StrCat(kind, "/", key), sourced.origin);
    if (!inserted) {
      const model::ObjectMeta& meta = MetaOf(sourced.object);
      state.errors.push_back({sourced.origin, std::string(kind), meta.namespace_, meta.name,
                              absl::StrCat("duplicate ", kind, " ", key,
                                           ", already defined by ", first->second),
                              {}});
      continue;
    }
    std::visit(Overloaded{
                   [&](const model::Service& s) { state.services.emplace(key, s); },
                   [&](const ServiceEndpoints& e) {
                     endpoint_objects.push_back(&e);
                     if (e.kind == ServiceEndpoints::Kind::kEndpointSlice) {
                       services_with_slices.insert(
                           absl::StrCat(e.meta.namespace_, "/", e.service_name));
                     }
                   },
                   [&](const model::Pod& p) { state.pods.emplace(key, p); },
                   [&](const model::Namespace& n) { state.namespaces.emplace(key, n); },
                   [&](const model::VirtualService& vs) {
                     state.virtual_services.emplace(key, vs);
                   },
                   [&](const model::DestinationRule& dr) {
                     state.destination_rules.emplace(key, dr);
                   },
                   [&](const model::AuthorizationPolicy& ap) {
                     state.authorization_policies.emplace(key, ap);
                   },
               },
               sourced.object);
  }

  PodIndex pods(state.pods);
  for (const ServiceEndpoints* endpoints : endpoint_objects) {
    std::string service = absl::StrCat(endpoints->meta.namespace_, "/", endpoints->service_name);
    if (endpoints->kind == ServiceEndpoints::Kind::kEndpoints &&
        services_with_slices.contains(service)) {
      continue;
    }
    std::vector<model::Endpoint>& flat = state.endpoints[service];
    for (const ServiceEndpoints::Group& group : endpoints->groups) {
      for (const ServiceEndpoints::Address& address : group.addresses) {
        for (const ServiceEndpoints::Port& port : group.ports) {
          flat.push_back(MakeEndpoint(*endpoints, address, port, pods));
        }
      }
    }
  }
  for (auto& [service, endpoints] : state.endpoints) SortAndDeduplicate(endpoints);
  return state;
}

}  // namespace meshpilot::convert
