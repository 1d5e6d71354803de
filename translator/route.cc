#include <map>

#include "absl/strings/str_cat.h"
#include "translator/names.h"
#include "translator/translate.h"

namespace meshpilot::translator {
namespace {

using envoy::config::route::v3::RouteConfiguration;
using envoy::config::route::v3::VirtualHost;

// The routes of one service port. Today the default route to the service's cluster;
// VirtualService routes are added in front of it.
void AddDefaultRoute(VirtualHost& vhost, const model::Service& service, uint32_t port) {
  auto* route = vhost.add_routes();
  route->set_name("default");
  route->mutable_match()->set_prefix("/");
  auto* action = route->mutable_route();
  action->set_cluster(OutboundClusterName(port, "", service.Hostname()));
  // Istio turns off Envoy's default 15s route timeout: no timeout unless a VirtualService sets one.
  action->mutable_timeout()->set_seconds(0);
}

VirtualHost ServiceVirtualHost(const model::Service& service, uint32_t port,
                               const ProxyInfo& proxy) {
  VirtualHost vhost;
  vhost.set_name(absl::StrCat(service.Hostname(), ":", port));
  for (const std::string& host : HostAliases(service, proxy.namespace_)) {
    vhost.add_domains(host);
    vhost.add_domains(absl::StrCat(host, ":", port));
  }
  AddDefaultRoute(vhost, service, port);
  return vhost;
}

// Sidecars: one RouteConfiguration per HTTP port, named by the port, with a virtual host per
// service on that port and a catch-all that passes unknown hosts through.
std::vector<RouteConfiguration> SidecarRoutes(const model::MeshState& state,
                                              const ProxyInfo& proxy) {
  std::map<uint32_t, RouteConfiguration> by_port;
  for (const auto& [key, service] : state.services) {
    for (const model::ServicePort& port : service.ports) {
      if (!model::IsHttpLike(port.protocol)) continue;
      RouteConfiguration& config = by_port[port.port];
      config.set_name(absl::StrCat(port.port));
      *config.add_virtual_hosts() = ServiceVirtualHost(service, port.port, proxy);
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
  std::vector<RouteConfiguration> routes;
  for (const auto& [key, service] : state.services) {
    for (const model::ServicePort& port : service.ports) {
      if (port.protocol == model::Protocol::kUdp) continue;
      RouteConfiguration config;
      config.set_name(absl::StrCat(service.Hostname(), ":", port.port));
      *config.add_virtual_hosts() = ServiceVirtualHost(service, port.port, proxy);
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
