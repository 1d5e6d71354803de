#include "translator/virtual_service_index.h"

#include <algorithm>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "translator/message_types.h"
#include "translator/names.h"

namespace meshpilot::translator {
namespace {

const std::vector<const model::VirtualService*> kNone;

// An http rule that matches every request: no match block, or one without conditions.
bool IsCatchAll(const model::HttpRoute& rule) {
  if (rule.match.empty()) return true;
  return absl::c_any_of(rule.match, [](const model::HttpMatchRequest& m) {
    bool any_path = !m.uri || (m.uri->type == model::StringMatch::Type::kPrefix &&
                               (m.uri->value.empty() || m.uri->value == "/"));
    return any_path && !m.scheme && !m.method && !m.authority && m.headers.empty() &&
           m.query_params.empty() && m.without_headers.empty() && !m.port &&
           m.source_labels.empty() && m.gateways.empty() && m.source_namespace.empty();
  });
}

model::ConfigError ErrorFor(const model::VirtualService& vs, std::string message,
                            const model::MessageType& type = kNotSupported) {
  return {.origin = "translator",
          .kind = "VirtualService",
          .namespace_ = vs.meta.namespace_,
          .name = vs.meta.name,
          .message = std::move(message),
          .type = type};
}

// Whether some DestinationRule whose host matches `host` (after resolving its namespace) defines
// `subset`, as Istio's analyzer looks for it.
bool SubsetDefined(const model::MeshState& state, const std::string& host,
                   const std::string& subset) {
  for (const auto& [key, rule] : state.destination_rules) {
    if (!HostMatches(host, ResolveHost(rule.host, rule.meta.namespace_))) continue;
    if (absl::c_any_of(rule.subsets, [&](const model::Subset& s) { return s.name == subset; })) {
      return true;
    }
  }
  return false;
}

// Whether a Service named by the VirtualService's hosts has a port its tls rules route.
bool HasTlsPort(const model::MeshState& state, const model::VirtualService& vs) {
  for (const auto& [key, service] : state.services) {
    const std::string hostname = service.Hostname();
    if (absl::c_none_of(vs.hosts, [&](const std::string& host) {
          return HostMatches(hostname, ResolveHost(host, vs.meta.namespace_));
        })) {
      continue;
    }
    if (absl::c_any_of(service.ports,
                       [](const model::ServicePort& port) { return model::IsTls(port.protocol); })) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool BoundToMesh(const model::VirtualService& vs) {
  return vs.gateways.empty() || absl::c_linear_search(vs.gateways, "mesh");
}

VirtualServiceIndex::VirtualServiceIndex(const model::MeshState& state, const ProxyInfo& proxy) {
  for (const auto& [key, vs] : state.virtual_services) {
    if (vs.hosts.empty() || !BoundToMesh(vs)) continue;
    if (!IsExportedTo(vs.export_to, vs.meta.namespace_, proxy.namespace_)) continue;
    visible_.push_back(&vs);
  }
  for (const auto& [key, service] : state.services) {
    const std::string hostname = service.Hostname();
    size_t best = 0;
    std::vector<const model::VirtualService*> matched;
    for (const model::VirtualService* vs : visible_) {
      size_t specificity = 0;
      for (const std::string& host : vs->hosts) {
        std::string resolved = ResolveHost(host, vs->meta.namespace_);
        if (HostMatches(hostname, resolved)) {
          specificity = std::max(specificity, HostSpecificity(resolved));
        }
      }
      if (specificity == 0) continue;
      if (specificity > best) {
        best = specificity;
        matched.clear();
      }
      if (specificity == best) matched.push_back(vs);
    }
    if (!matched.empty()) by_service_[key] = std::move(matched);
  }
}

const std::vector<const model::VirtualService*>& VirtualServiceIndex::ForService(
    const model::Service& service) const {
  auto it = by_service_.find(service.meta.Key());
  return it == by_service_.end() ? kNone : it->second;
}

std::vector<model::ConfigError> CheckVirtualServices(const model::MeshState& state) {
  std::vector<model::ConfigError> errors;
  // Exact resolved host -> the mesh VirtualServices defining it, in merge order.
  std::map<std::string, std::vector<const model::VirtualService*>> by_host;
  for (const auto& [key, vs] : state.virtual_services) {
    if (!BoundToMesh(vs)) {
      errors.push_back(ErrorFor(
          vs, "spec.gateways: bound only to gateways; meshpilot serves the mesh (sidecars and "
              "proxyless gRPC) only, so this VirtualService is ignored"));
      continue;
    }
    auto check_host = [&](const model::Destination& destination, const std::string& field) {
      std::string host = ResolveHost(destination.host, vs.meta.namespace_);
      if (FindServiceByHostname(state, host) == nullptr) {
        errors.push_back(ErrorFor(
            vs,
            absl::StrCat(field, ".host: \"", destination.host, "\" (", host,
                         ") is not a known Service; requests routed there fail (503)"),
            kReferencedResourceNotFound));
        return;
      }
      if (!destination.subset.empty() && !SubsetDefined(state, host, destination.subset)) {
        errors.push_back(ErrorFor(
            vs,
            absl::StrCat(field, ".subset: no DestinationRule for ", host, " defines subset \"",
                         destination.subset, "\"; requests routed there fail (503)"),
            kReferencedResourceNotFound));
      }
    };
    for (size_t i = 0; i < vs.hosts.size(); ++i) {
      const std::string host = ResolveHost(vs.hosts[i], vs.meta.namespace_);
      if (host.find('*') == std::string::npos && FindServiceByHostname(state, host) == nullptr) {
        errors.push_back(ErrorFor(
            vs, absl::StrCat("spec.hosts[", i, "]: \"", vs.hosts[i], "\" (", host,
                             ") is not a known Service (ServiceEntry is not supported yet); no "
                             "route is built for it"),
            kReferencedResourceNotFound));
      }
    }
    for (size_t i = 0; i < vs.http.size(); ++i) {
      if (vs.http[i].retries && vs.http[i].retries->retry_remote_localities.value_or(false)) {
        errors.push_back(ErrorFor(
            vs, absl::StrCat("spec.http[", i, "].retries.retryRemoteLocalities: retrying on "
                             "hosts of other localities (Envoy's previous_priorities) is not "
                             "supported yet; ignored")));
      }
      for (size_t j = 0; j < vs.http[i].route.size(); ++j) {
        check_host(vs.http[i].route[j].destination,
                   absl::StrCat("spec.http[", i, "].route[", j, "].destination"));
      }
    }
    for (size_t i = 0; i < vs.tcp.size(); ++i) {
      for (size_t j = 0; j < vs.tcp[i].route.size(); ++j) {
        check_host(vs.tcp[i].route[j].destination,
                   absl::StrCat("spec.tcp[", i, "].route[", j, "].destination"));
      }
    }
    if (!vs.tls.empty() && !HasTlsPort(state, vs)) {
      errors.push_back(ErrorFor(
          vs, "spec.tls: no Service of this VirtualService's hosts has an HTTPS or TLS port "
              "(named https-*/tls-* or with that appProtocol); tls rules apply only there, so "
              "they are ignored"));
    }
    for (size_t i = 0; i < vs.tls.size(); ++i) {
      for (size_t j = 0; j < vs.tls[i].route.size(); ++j) {
        check_host(vs.tls[i].route[j].destination,
                   absl::StrCat("spec.tls[", i, "].route[", j, "].destination"));
      }
    }
    for (const std::string& host : vs.hosts) {
      by_host[ResolveHost(host, vs.meta.namespace_)].push_back(&vs);
    }
  }
  for (const auto& [host, services] : by_host) {
    if (services.size() < 2) continue;
    std::vector<std::string> names;
    for (const model::VirtualService* vs : services) names.push_back(vs->meta.Key());
    std::string order = absl::StrJoin(names, ", ");
    for (size_t i = 1; i < services.size(); ++i) {
      const model::VirtualService* earlier_catch_all = nullptr;
      for (size_t j = 0; j < i && earlier_catch_all == nullptr; ++j) {
        if (absl::c_any_of(services[j]->http, IsCatchAll)) earlier_catch_all = services[j];
      }
      errors.push_back(ErrorFor(
          *services[i],
          absl::StrCat("spec.hosts: host ", host, " is defined by several VirtualServices (",
                       order, "); their http rules are merged in that order"),
          kConflictingMeshGatewayVirtualServiceHosts));
      if (earlier_catch_all != nullptr && !services[i]->http.empty()) {
        errors.push_back(ErrorFor(
            *services[i],
            absl::StrCat("spec.http: the rules of this VirtualService for host ", host,
                         " are unreachable: ", earlier_catch_all->meta.Key(),
                         ", merged before it, has a rule that matches every request"),
            kVirtualServiceUnreachableRule));
      }
    }
  }
  return errors;
}

}  // namespace meshpilot::translator
