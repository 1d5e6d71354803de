#pragma once

#include <string>
#include <vector>

#include "tests/testing/mesh_builder.h"
#include "translator/translate.h"

// A small mesh for the traffic-management tests: `reviews` (HTTP 9080) with one v1 and one
// v2 pod, `ratings` (gRPC 7070, HTTP 8080) in `shop`, and helpers to add Istio objects.
namespace meshpilot::translator::traffic_testing {

inline ProxyInfo Proxy(bool grpc, const std::string& ns = "default",
                       std::map<std::string, std::string> labels = {}) {
  envoy::config::core::v3::Node node;
  node.set_id("sidecar~10.0.0.9~client-1." + ns + "~" + ns + ".svc.cluster.local");
  auto& metadata = *node.mutable_metadata()->mutable_fields();
  if (grpc) metadata["GENERATOR"].set_string_value("grpc");
  for (const auto& [key, value] : labels) {
    (*metadata["LABELS"].mutable_struct_value()->mutable_fields())[key].set_string_value(value);
  }
  return *ParseProxyInfo(node);
}
inline ProxyInfo Sidecar(const std::string& ns = "default") { return Proxy(false, ns); }
inline ProxyInfo Grpc(const std::string& ns = "default") { return Proxy(true, ns); }

inline model::Endpoint Versioned(const std::string& ip, const std::string& version) {
  model::Endpoint endpoint = testing::MakeEndpoint(ip, 9080, "http");
  endpoint.labels = {{"app", "reviews"}, {"version", version}};
  return endpoint;
}

inline model::MeshState Mesh() {
  using model::Protocol;
  model::MeshState state;
  testing::AddService(state,
                      testing::MakeService("default", "reviews", "10.96.0.10",
                                           {testing::MakePort("http", 9080, Protocol::kHttp)}),
                      {Versioned("10.1.0.1", "v1"), Versioned("10.1.0.2", "v2")});
  testing::AddService(state,
                      testing::MakeService("shop", "ratings", "10.96.0.30",
                                           {testing::MakePort("grpc", 7070, Protocol::kGrpc),
                                            testing::MakePort("http-admin", 8080,
                                                              Protocol::kHttp)}),
                      {testing::MakeEndpoint("10.3.0.1", 7070, "grpc")});
  return state;
}

inline model::VirtualService& AddVirtualService(model::MeshState& state, const std::string& ns,
                                                const std::string& name,
                                                std::vector<std::string> hosts) {
  model::VirtualService& vs = state.virtual_services[ns + "/" + name];
  vs.meta.namespace_ = ns;
  vs.meta.name = name;
  vs.hosts = std::move(hosts);
  return vs;
}

inline model::HttpRouteDestination To(const std::string& host, const std::string& subset = "",
                                      int32_t weight = 0) {
  model::HttpRouteDestination destination;
  destination.destination.host = host;
  destination.destination.subset = subset;
  destination.weight = weight;
  return destination;
}

inline model::HttpRoute RouteTo(const std::string& host, const std::string& subset = "") {
  model::HttpRoute route;
  route.route.push_back(To(host, subset));
  return route;
}

inline model::DestinationRule& AddDestinationRule(model::MeshState& state, const std::string& ns,
                                                  const std::string& name,
                                                  const std::string& host) {
  model::DestinationRule& rule = state.destination_rules[ns + "/" + name];
  rule.meta.namespace_ = ns;
  rule.meta.name = name;
  rule.host = host;
  return rule;
}

inline void AddVersionSubsets(model::DestinationRule& rule) {
  rule.subsets.push_back({.name = "v1", .labels = {{"version", "v1"}}});
  rule.subsets.push_back({.name = "v2", .labels = {{"version", "v2"}}});
}

// The routes of the virtual host for `vhost_name` ("FQDN:PORT") in the route config `config`.
inline std::vector<envoy::config::route::v3::Route> RoutesOf(const model::MeshState& state,
                                                             const ProxyInfo& proxy,
                                                             const std::string& config,
                                                             const std::string& vhost_name) {
  for (const auto& route_config : BuildRouteConfigurations(state, proxy)) {
    if (route_config.name() != config) continue;
    for (const auto& vhost : route_config.virtual_hosts()) {
      if (vhost.name() == vhost_name) return {vhost.routes().begin(), vhost.routes().end()};
    }
  }
  return {};
}

inline std::vector<envoy::config::route::v3::Route> ReviewsRoutes(const model::MeshState& state,
                                                                  const ProxyInfo& proxy) {
  const std::string vhost = "reviews.default.svc.cluster.local:9080";
  return RoutesOf(state, proxy, proxy.proxyless_grpc ? vhost : "9080", vhost);
}

template <typename T>
const T* FindByName(const std::vector<T>& resources, const std::string& name) {
  for (const T& resource : resources) {
    if (resource.name() == name) return &resource;
  }
  return nullptr;
}

}  // namespace meshpilot::translator::traffic_testing
