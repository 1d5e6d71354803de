#include "translator/inbound.h"

#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.pb.h"
#include "envoy/extensions/filters/listener/original_dst/v3/original_dst.pb.h"
#include "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"
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

// An HttpConnectionManager serving inbound HTTP with an inline route: to `cluster` (the local
// application of one port, or the passthrough for ports no Service declares), or with none to
// the gRPC server itself (non-forwarding, proxyless).
HttpConnectionManager InboundConnectionManager(const std::string& route_name,
                                               const std::string& virtual_host,
                                               const std::string& stat_prefix,
                                               const SelectedPolicies& policies,
                                               std::optional<std::string> cluster) {
  const bool proxyless_grpc = !cluster.has_value();
  HttpConnectionManager hcm;
  hcm.set_stat_prefix(stat_prefix);
  auto* config = hcm.mutable_route_config();
  config->set_name(route_name);
  config->mutable_validate_clusters()->set_value(false);
  auto* vhost = config->add_virtual_hosts();
  vhost->set_name(virtual_host);
  vhost->add_domains("*");
  auto* route = vhost->add_routes();
  route->set_name("default");
  route->mutable_match()->set_prefix("/");
  if (proxyless_grpc) {
    route->mutable_non_forwarding_action();
  } else {
    AllowWebSocket(hcm);
    *hcm.add_http_filters() = MetadataExchangeFilter(/*inbound=*/true);
    route->mutable_route()->set_cluster(*cluster);
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

void AddHcm(FilterChain& chain, const HttpConnectionManager& hcm) {
  Filter* filter = chain.add_filters();
  filter->set_name(std::string(kHcmFilter));
  filter->mutable_typed_config()->PackFrom(hcm);
}

// A listener filter of virtualInbound, skipped (filter_disabled) on `disabled_ports`.
void AddInspector(Listener& listener, std::string_view name, const google::protobuf::Message& config,
                  const std::vector<uint32_t>& disabled_ports) {
  auto* filter = listener.add_listener_filters();
  filter->set_name(std::string(name));
  filter->mutable_typed_config()->PackFrom(config);
  if (disabled_ports.empty()) return;
  auto port_range = [](envoy::config::listener::v3::ListenerFilterChainMatchPredicate& rule,
                       uint32_t port) {
    rule.mutable_destination_port_range()->set_start(static_cast<int32_t>(port));
    rule.mutable_destination_port_range()->set_end(static_cast<int32_t>(port + 1));
  };
  auto* disabled = filter->mutable_filter_disabled();
  if (disabled_ports.size() == 1) {
    port_range(*disabled, disabled_ports[0]);
    return;
  }
  for (uint32_t port : disabled_ports) port_range(*disabled->mutable_or_match()->add_rules(), port);
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

  // As Istio's virtualInbound (plaintext, no mTLS here): the tls_inspector reads the SNI
  // (connection.sni, TLS passed through) where it can matter, everywhere but declared HTTP ports;
  // the http_inspector tells HTTP from TCP on the ports no Service declares. A client that
  // sends nothing first goes on without them after the listener filter timeout.
  std::vector<uint32_t> http_ports, declared_ports;
  for (const InboundPort& port : InboundPorts(state, proxy)) {
    declared_ports.push_back(port.port);
    if (model::IsHttpLike(port.protocol)) http_ports.push_back(port.port);
    const std::string cluster = InboundClusterName(port.port);
    FilterChain* chain = listener.add_filter_chains();
    chain->set_name(cluster);
    chain->mutable_filter_chain_match()->mutable_destination_port()->set_value(port.port);
    if (model::IsHttpLike(port.protocol)) {
      AddHcm(*chain, InboundConnectionManager(cluster, absl::StrCat("inbound|http|", port.port),
                                              absl::StrCat("inbound_0.0.0.0_", port.port),
                                              policies, cluster));
    } else {
      AddTcpFilters(*chain, policies, cluster);
    }
  }
  listener.set_continue_on_listener_filters_timeout(true);
  AddInspector(listener, "envoy.filters.listener.tls_inspector",
               envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector(), http_ports);
  AddInspector(listener, "envoy.filters.listener.http_inspector",
               envoy::extensions::filters::listener::http_inspector::v3::HttpInspector(),
               declared_ports);
  // Ports no Service declares pass through, still under the policies (Istio's catch-all
  // chains): HTTP/1.1 and h2c through the HTTP connection manager, the rest as TCP.
  const std::string passthrough(kInboundPassthroughCluster);
  FilterChain* http = listener.add_filter_chains();
  http->set_name(std::string(kVirtualInboundCatchAllHttp));
  http->mutable_filter_chain_match()->set_transport_protocol("raw_buffer");
  http->mutable_filter_chain_match()->add_application_protocols("http/1.1");
  http->mutable_filter_chain_match()->add_application_protocols("h2c");
  AddHcm(*http, InboundConnectionManager(passthrough, "inbound|http|0", passthrough, policies,
                                         passthrough));
  for (const char* transport : {"raw_buffer", "tls"}) {
    FilterChain* tcp = listener.add_filter_chains();
    tcp->set_name(std::string(kVirtualInbound));
    tcp->mutable_filter_chain_match()->set_transport_protocol(transport);
    AddTcpFilters(*tcp, policies, passthrough);
  }
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
  // HTTP from the catch-all chain goes on in the protocol it came in (h2c stays h2c), as Istio's.
  envoy::extensions::upstreams::http::v3::HttpProtocolOptions options;
  options.mutable_use_downstream_protocol_config()->mutable_http_protocol_options();
  options.mutable_use_downstream_protocol_config()->mutable_http2_protocol_options();
  (*passthrough.mutable_typed_extension_protocol_options())
      ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
          .PackFrom(options);
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
        InboundClusterName(port.port), absl::StrCat("inbound|http|", port.port),
        absl::StrCat("inbound_", port.port), policies, /*cluster: proxyless*/ std::nullopt);
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
