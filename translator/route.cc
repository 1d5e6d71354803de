#include <map>

#include "absl/strings/str_cat.h"
#include "translator/destination_rule_index.h"
#include "translator/http_route.h"
#include "translator/names.h"
#include "translator/translate.h"
#include "translator/virtual_service_index.h"

namespace meshpilot::translator {
namespace {

using envoy::config::route::v3::RouteConfiguration;
using envoy::config::route::v3::VirtualHost;

// What every virtual host of one proxy's routes looks up.
struct RouteIndexes {
  RouteIndexes(const model::MeshState& state, const ProxyInfo& proxy)
      : virtual_services(state, proxy), rules(state, proxy) {}
  VirtualServiceIndex virtual_services;
  DestinationRuleIndex rules;
};

// The virtual host of one service port: the http rules of the VirtualServices for the
// service, merged in order; or, without any, the default route to the service's cluster.
// As in Istio, a request that matches none of a VirtualService's rules gets 404.
VirtualHost ServiceVirtualHost(const model::MeshState& state, const model::Service& service,
                               uint32_t port, const ProxyInfo& proxy,
                               const RouteIndexes& indexes) {
  VirtualHost vhost;
  vhost.set_name(absl::StrCat(service.Hostname(), ":", port));
  for (const std::string& host : HostAliases(service, proxy.namespace_)) {
    vhost.add_domains(host);
    vhost.add_domains(absl::StrCat(host, ":", port));
  }
  RouteContext context{state, proxy, indexes.rules, port};
  std::vector<envoy::config::route::v3::Route> routes;
  for (const model::VirtualService* vs : indexes.virtual_services.ForService(service)) {
    if (AppendHttpRoutes(*vs, context, routes)) break;
  }
  // No VirtualService, or none with a rule for this proxy and port (istiod then drops the
  // VirtualService for this proxy): the default route.
  if (routes.empty()) {
    routes.push_back(DefaultRoute(
        OutboundClusterName(port, "", service.Hostname()), proxy,
        ResolveTrafficPolicy(indexes.rules.ForService(service), nullptr, port)));
  }
  for (auto& route : routes) *vhost.add_routes() = std::move(route);
  return vhost;
}

// Sidecars: one RouteConfiguration per HTTP port, named by the port, with a virtual host per
// service on that port and a catch-all that passes unknown hosts through.
std::vector<RouteConfiguration> SidecarRoutes(const model::MeshState& state,
                                              const ProxyInfo& proxy) {
  RouteIndexes indexes(state, proxy);
  std::map<uint32_t, RouteConfiguration> by_port;
  for (const auto& [key, service] : state.services) {
    for (const model::ServicePort& port : service.ports) {
      if (!model::IsHttpLike(port.protocol)) continue;
      RouteConfiguration& config = by_port[port.port];
      config.set_name(absl::StrCat(port.port));
      *config.add_virtual_hosts() = ServiceVirtualHost(state, service, port.port, proxy, indexes);
    }
  }
  std::vector<RouteConfiguration> routes;
  for (auto& [port, config] : by_port) {
    auto* allow_any = config.add_virtual_hosts();
    allow_any->set_name("allow_any");
    allow_any->add_domains("*");
    auto* route = allow_any->add_routes();
    route->set_name("allow_any");
    route->mutable_match()->set_prefix("/");
    route->mutable_route()->set_cluster(std::string(kPassthroughCluster));
    route->mutable_route()->mutable_timeout()->set_seconds(0);
    config.mutable_validate_clusters()->set_value(false);
    routes.push_back(std::move(config));
  }
  return routes;
}

// Proxyless gRPC: one RouteConfiguration per service port, named FQDN:PORT.
std::vector<RouteConfiguration> GrpcRoutes(const model::MeshState& state, const ProxyInfo& proxy) {
  RouteIndexes indexes(state, proxy);
  std::vector<RouteConfiguration> routes;
  for (const auto& [key, service] : state.services) {
    for (const model::ServicePort& port : service.ports) {
      if (port.protocol == model::Protocol::kUdp) continue;
      RouteConfiguration config;
      config.set_name(absl::StrCat(service.Hostname(), ":", port.port));
      *config.add_virtual_hosts() = ServiceVirtualHost(state, service, port.port, proxy, indexes);
      routes.push_back(std::move(config));
    }
  }
  std::sort(routes.begin(), routes.end(),
            [](const auto& a, const auto& b) { return a.name() < b.name(); });
  return routes;
}

}  // namespace

std::vector<RouteConfiguration> BuildRouteConfigurations(const model::MeshState& state,
                                                         const ProxyInfo& proxy) {
  return proxy.proxyless_grpc ? GrpcRoutes(state, proxy) : SidecarRoutes(state, proxy);
}

}  // namespace meshpilot::translator
