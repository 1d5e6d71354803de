#include "translator/inbound.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "envoy/extensions/filters/listener/original_dst/v3/original_dst.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "translator/authorization.h"
#include "translator/http_connection_manager.h"
#include "translator/rbac.h"

namespace meshpilot::translator {
namespace {

using envoy::config::cluster::v3::Cluster;
using envoy::config::listener::v3::Filter;
using envoy::config::listener::v3::FilterChain;
using envoy::config::listener::v3::Listener;
using envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;

constexpr std::string_view kHcmFilter = "envoy.filters.network.http_connection_manager";

Filter TcpProxy(const std::string& cluster) {
  envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy tcp_proxy;
  tcp_proxy.set_stat_prefix(cluster);
  tcp_proxy.set_cluster(cluster);
  Filter filter;
  filter.set_name("envoy.filters.network.tcp_proxy");
  filter.mutable_typed_config()->PackFrom(tcp_proxy);
  return filter;
}

// An HttpConnectionManager serving one inbound port with an inline route: to the local
// application (sidecars) or to the gRPC server itself (non-forwarding, proxyless).
HttpConnectionManager InboundConnectionManager(uint32_t port, const std::string& stat_prefix,
                                               const SelectedPolicies& policies,
                                               bool proxyless_grpc) {
  HttpConnectionManager hcm;
  hcm.set_stat_prefix(stat_prefix);
  auto* config = hcm.mutable_route_config();
  config->set_name(InboundClusterName(port));
  config->mutable_validate_clusters()->set_value(false);
  auto* vhost = config->add_virtual_hosts();
  vhost->set_name(absl::StrCat("inbound|http|", port));
  vhost->add_domains("*");
  auto* route = vhost->add_routes();
  route->set_name("default");
  route->mutable_match()->set_prefix("/");
  if (proxyless_grpc) {
    route->mutable_non_forwarding_action();
  } else {
    *hcm.add_http_filters() = MetadataExchangeFilter(/*inbound=*/true);
    route->mutable_route()->set_cluster(InboundClusterName(port));
    route->mutable_route()->mutable_timeout()->set_seconds(0);
  }
  for (auto& filter : RbacHttpFilters(policies, proxyless_grpc)) {
    *hcm.add_http_filters() = std::move(filter);
  }
  auto* router = hcm.add_http_filters();
  router->set_name("envoy.filters.http.router");
  router->mutable_typed_config()->PackFrom(envoy::extensions::filters::http::router::v3::Router());
  return hcm;
}

void AddTcpFilters(FilterChain& chain, const SelectedPolicies& policies,
                   const std::string& cluster) {
  for (auto& filter : RbacNetworkFilters(policies)) *chain.add_filters() = std::move(filter);
  *chain.add_filters() = TcpProxy(cluster);
}

Cluster StaticCluster(const std::string& name, uint32_t port) {
  Cluster cluster;
  cluster.set_name(name);
  cluster.set_type(Cluster::STATIC);
  cluster.mutable_connect_timeout()->set_seconds(10);
  auto* assignment = cluster.mutable_load_assignment();
  assignment->set_cluster_name(name);
  auto* address = assignment->add_endpoints()
                      ->add_lb_endpoints()
                      ->mutable_endpoint()
                      ->mutable_address()
                      ->mutable_socket_address();
  address->set_address("127.0.0.1");
  address->set_port_value(port);
  return cluster;
}

}  // namespace

std::string InboundClusterName(uint32_t port) { return absl::StrCat("inbound|", port, "||"); }

std::vector<InboundPort> InboundPorts(const model::MeshState& state, const ProxyInfo& proxy) {
  std::map<uint32_t, model::Protocol> ports;
  if (proxy.ip.empty()) return {};
  for (const auto& [key, service] : state.services) {
    for (const model::Endpoint& endpoint : state.EndpointsOf(service)) {
      if (endpoint.address != proxy.ip || endpoint.port == 0) continue;
      for (const model::ServicePort& port : service.ports) {
        if (port.name == endpoint.port_name && port.protocol != model::Protocol::kUdp) {
          ports.try_emplace(endpoint.port, port.protocol);
        }
      }
    }
  }
  std::vector<InboundPort> result;
  for (const auto& [port, protocol] : ports) result.push_back({port, protocol});
  return result;
}

Listener VirtualInboundListener(const model::MeshState& state, const ProxyInfo& proxy) {
  const SelectedPolicies policies = SelectPolicies(state, proxy);
  Listener listener;
  listener.set_name(std::string(kVirtualInbound));
  auto* address = listener.mutable_address()->mutable_socket_address();
  address->set_address("0.0.0.0");
  address->set_port_value(kVirtualInboundPort);
  listener.mutable_use_original_dst()->set_value(true);
  listener.set_traffic_direction(envoy::config::core::v3::INBOUND);
  auto* original_dst = listener.add_listener_filters();
  original_dst->set_name("envoy.filters.listener.original_dst");
  original_dst->mutable_typed_config()->PackFrom(
      envoy::extensions::filters::listener::original_dst::v3::OriginalDst());

  for (const InboundPort& port : InboundPorts(state, proxy)) {
    const std::string cluster = InboundClusterName(port.port);
    FilterChain* chain = listener.add_filter_chains();
    chain->set_name(cluster);
    chain->mutable_filter_chain_match()->mutable_destination_port()->set_value(port.port);
    if (model::IsHttpLike(port.protocol)) {
      Filter* hcm = chain->add_filters();
      hcm->set_name(std::string(kHcmFilter));
      hcm->mutable_typed_config()->PackFrom(InboundConnectionManager(
          port.port, absl::StrCat("inbound_0.0.0.0_", port.port), policies, false));
    } else {
      AddTcpFilters(*chain, policies, cluster);
    }
  }
  // Ports no Service declares are passed through as TCP, still under the policies (Istio).
  FilterChain* passthrough = listener.mutable_default_filter_chain();
  passthrough->set_name(std::string(kInboundPassthroughCluster));
  AddTcpFilters(*passthrough, policies, std::string(kInboundPassthroughCluster));
  return listener;
}

std::vector<Cluster> InboundClusters(const model::MeshState& state, const ProxyInfo& proxy) {
  std::vector<Cluster> clusters;
  for (const InboundPort& port : InboundPorts(state, proxy)) {
    clusters.push_back(StaticCluster(InboundClusterName(port.port), port.port));
  }
  // Original destination, from 127.0.0.6 so iptables does not capture it again (Istio).
  Cluster passthrough;
  passthrough.set_name(std::string(kInboundPassthroughCluster));
  passthrough.set_type(Cluster::ORIGINAL_DST);
  passthrough.set_lb_policy(Cluster::CLUSTER_PROVIDED);
  passthrough.mutable_connect_timeout()->set_seconds(10);
  passthrough.mutable_upstream_bind_config()->mutable_source_address()->set_address("127.0.0.6");
  passthrough.mutable_upstream_bind_config()->mutable_source_address()->set_port_value(0);
  clusters.push_back(std::move(passthrough));
  return clusters;
}

std::vector<Listener> GrpcServerListeners(const model::MeshState& state,
                                          const ProxyInfo& proxy) {
  std::vector<InboundPort> ports = InboundPorts(state, proxy);
  if (ports.empty()) return {};
  const SelectedPolicies policies = SelectPolicies(state, proxy);
  std::vector<Listener> listeners;
  for (const InboundPort& port : ports) {
    HttpConnectionManager hcm = InboundConnectionManager(
        port.port, absl::StrCat("inbound_", port.port), policies, /*proxyless_grpc=*/true);
    // gRPC checks that the Listener's address is the one it listens on.
    std::vector<std::pair<std::string, std::string>> addresses = {  // (address, in the name)
        {proxy.ip,
         proxy.ip.find(':') == std::string::npos ? proxy.ip : absl::StrCat("[", proxy.ip, "]")}};
    if (proxy.ip != "0.0.0.0") addresses.emplace_back("0.0.0.0", "0.0.0.0");
    if (proxy.ip != "::") addresses.emplace_back("::", "[::]");
    for (const auto& [ip, host] : addresses) {
      Listener listener;
      listener.set_name(absl::StrCat(std::string(kGrpcServerListenerPrefix), host, ":", port.port));
      auto* address = listener.mutable_address()->mutable_socket_address();
      address->set_address(ip);
      address->set_port_value(port.port);
      listener.set_traffic_direction(envoy::config::core::v3::INBOUND);
      Filter* filter = listener.add_filter_chains()->add_filters();
      filter->set_name(std::string(kHcmFilter));
      filter->mutable_typed_config()->PackFrom(hcm);
      listeners.push_back(std::move(listener));
    }
  }
  return listeners;
}

}  // namespace meshpilot::translator
