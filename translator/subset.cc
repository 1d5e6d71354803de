#include "translator/subset.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "translator/destination_rule_index.h"
#include "translator/names.h"
#include "translator/virtual_service_index.h"

namespace meshpilot::translator {
namespace {

const model::ServicePort* FindPort(const model::Service& service, uint32_t number) {
  for (const model::ServicePort& port : service.ports) {
    if (port.port == number) return &port;
  }
  return nullptr;
}

// (service key, port, subset) of every subset a visible VirtualService sends traffic to.
using SubsetRef = std::tuple<std::string, uint32_t, std::string>;

void CollectSubsetRefs(const model::MeshState& state, const model::VirtualService& vs,
                       const model::Destination& destination, std::set<SubsetRef>& refs) {
  if (destination.subset.empty()) return;
  const model::Service* service =
      FindServiceByHostname(state, ResolveHost(destination.host, vs.meta.namespace_));
  if (service == nullptr) return;
  for (const model::ServicePort& port : service->ports) {
    // Without a port, the destination follows the port the request came in on: any of them.
    if (destination.port && *destination.port != port.port) continue;
    refs.emplace(service->meta.Key(), port.port, destination.subset);
  }
}

std::set<SubsetRef> ReferencedSubsets(const model::MeshState& state, const ProxyInfo& proxy) {
  std::set<SubsetRef> refs;
  const VirtualServiceIndex index(state, proxy);
  for (const model::VirtualService* vs : index.visible()) {
    for (const model::HttpRoute& rule : vs->http) {
      for (const model::HttpRouteDestination& route : rule.route) {
        CollectSubsetRefs(state, *vs, route.destination, refs);
      }
      if (rule.mirror) CollectSubsetRefs(state, *vs, *rule.mirror, refs);
      for (const model::HttpMirrorPolicy& mirror : rule.mirrors) {
        CollectSubsetRefs(state, *vs, mirror.destination, refs);
      }
    }
    auto collect = [&](const auto& rules) {
      for (const auto& rule : rules) {
        for (const model::RouteDestination& route : rule.route) {
          CollectSubsetRefs(state, *vs, route.destination, refs);
        }
      }
    };
    collect(vs->tcp);
    collect(vs->tls);
  }
  return refs;
}

}  // namespace

std::vector<OutboundCluster> BuildOutboundClusters(const model::MeshState& state,
                                                   const ProxyInfo& proxy) {
  DestinationRuleIndex rules(state, proxy);
  std::vector<OutboundCluster> clusters;
  for (const auto& [key, service] : state.services) {
    const model::DestinationRule* rule = rules.ForService(service);
    for (const model::ServicePort& port : service.ports) {
      if (port.protocol == model::Protocol::kUdp) continue;
      const std::string hostname = service.Hostname();
      clusters.push_back({.name = OutboundClusterName(port.port, "", hostname),
                          .service = &service,
                          .port = &port,
                          .policy = ResolveTrafficPolicy(rule, nullptr, port.port)});
      if (rule == nullptr) continue;
      for (const model::Subset& subset : rule->subsets) {
        clusters.push_back({.name = OutboundClusterName(port.port, subset.name, hostname),
                            .service = &service,
                            .port = &port,
                            .subset = subset.name,
                            .selector = subset.labels,
                            .policy = ResolveTrafficPolicy(rule, &subset, port.port)});
      }
    }
  }
  for (const auto& [service_key, port_number, subset] : ReferencedSubsets(state, proxy)) {
    const model::Service& service = state.services.at(service_key);
    const model::DestinationRule* rule = rules.ForService(service);
    const model::ServicePort* port = FindPort(service, port_number);
    if (port == nullptr || port->protocol == model::Protocol::kUdp ||
        FindSubset(rule, subset) != nullptr) {
      continue;
    }
    clusters.push_back({.name = OutboundClusterName(port_number, subset, service.Hostname()),
                        .service = &service,
                        .port = port,
                        .subset = subset,
                        .undefined_subset = true,
                        .policy = ResolveTrafficPolicy(rule, nullptr, port_number)});
  }
  std::sort(clusters.begin(), clusters.end(),
            [](const OutboundCluster& a, const OutboundCluster& b) { return a.name < b.name; });
  // A service port listed twice would yield the same name twice; keep the first.
  clusters.erase(std::unique(clusters.begin(), clusters.end(),
                             [](const auto& a, const auto& b) { return a.name == b.name; }),
                 clusters.end());
  return clusters;
}

ResolvedDestination ResolveDestination(const model::MeshState& state,
                                       const model::Destination& destination,
                                       const std::string& config_namespace,
                                       uint32_t listener_port) {
  ResolvedDestination out;
  std::string hostname = ResolveHost(destination.host, config_namespace);
  out.service = FindServiceByHostname(state, hostname);
  if (destination.port) {
    out.port = *destination.port;
  } else if (out.service != nullptr && out.service->ports.size() == 1) {
    out.port = out.service->ports.front().port;
  } else {
    out.port = listener_port;
  }
  out.cluster = OutboundClusterName(out.port, destination.subset, hostname);
  return out;
}

bool SelectsEndpoint(const std::map<std::string, std::string>& selector,
                     const model::Endpoint& endpoint) {
  for (const auto& [key, value] : selector) {
    auto it = endpoint.labels.find(key);
    if (it == endpoint.labels.end() || it->second != value) return false;
  }
  return true;
}

}  // namespace meshpilot::translator
