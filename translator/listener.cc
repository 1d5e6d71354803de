#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "envoy/extensions/filters/listener/original_dst/v3/original_dst.pb.h"
#include "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "translator/http_connection_manager.h"
#include "translator/names.h"
#include "translator/tcp_route.h"
#include "translator/tls_route.h"
#include "translator/translate.h"

namespace meshpilot::translator {
namespace {

using envoy::config::listener::v3::Filter;
using envoy::config::listener::v3::Listener;

void SetAddress(Listener& listener, const std::string& ip, uint32_t port) {
  auto* address = listener.mutable_address()->mutable_socket_address();
  address->set_address(ip);
  address->set_port_value(port);
}

Filter TcpProxyFilter(std::string_view stat_prefix, std::string_view cluster) {
  envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy tcp_proxy;
  tcp_proxy.set_stat_prefix(std::string(stat_prefix));
  tcp_proxy.set_cluster(std::string(cluster));
  Filter filter;
  filter.set_name("envoy.filters.network.tcp_proxy");
  filter.mutable_typed_config()->PackFrom(tcp_proxy);
  return filter;
}

// Outbound listeners of a sidecar, as istiod builds them: the proxy binds only
// virtualOutbound (15001); iptables sends it every outbound connection, and it hands each
// one to the listener for its original destination. HTTP ports share one listener per port
// (0.0.0.0_PORT, routes by Host via RDS "PORT"); TCP ports get one per clusterIP:PORT, with
// the VirtualServices' tcp rules, and so do HTTPS/TLS ports, with their tls rules (SNI matched
// by the tls_inspector).
std::vector<Listener> SidecarListeners(const model::MeshState& state, const ProxyInfo& proxy) {
  std::map<std::string, Listener> by_name;
  const VirtualServiceIndex virtual_services(state, proxy);
  const DestinationRuleIndex rules(state, proxy);
  for (const auto& [key, service] : state.services) {
    for (const model::ServicePort& port : service.ports) {
      if (model::IsHttpLike(port.protocol)) {
        std::string name = absl::StrCat("0.0.0.0_", port.port);
        if (by_name.contains(name)) continue;
        Listener& listener = by_name[name];
        listener.set_name(name);
        SetAddress(listener, "0.0.0.0", port.port);
        listener.mutable_bind_to_port()->set_value(false);
        listener.set_traffic_direction(envoy::config::core::v3::OUTBOUND);
        auto* filter = listener.add_filter_chains()->add_filters();
        filter->set_name("envoy.filters.network.http_connection_manager");
        filter->mutable_typed_config()->PackFrom(
            RdsConnectionManager(absl::StrCat("outbound_", name), absl::StrCat(port.port),
                                 /*proxyless_grpc=*/false));
      } else if (model::IsTcpLike(port.protocol) && !service.cluster_ip.empty() &&
                 service.cluster_ip != "None") {
        std::string name = absl::StrCat(service.cluster_ip, "_", port.port);
        Listener& listener = by_name[name];
        listener.set_name(name);
        SetAddress(listener, service.cluster_ip, port.port);
        listener.mutable_bind_to_port()->set_value(false);
        listener.set_traffic_direction(envoy::config::core::v3::OUTBOUND);
        if (!model::IsTls(port.protocol)) {
          *listener.add_filter_chains()->add_filters() =
              OutboundTcpProxy(state, virtual_services, rules, proxy, service, port.port);
          continue;
        }
        for (auto& chain :
             OutboundTlsChains(state, virtual_services, rules, proxy, service, port.port)) {
          *listener.add_filter_chains() = std::move(chain);
        }
        if (absl::c_any_of(listener.filter_chains(), [](const auto& chain) {
              return chain.filter_chain_match().server_names_size() > 0;
            })) {
          // As Istio: a client that sends nothing first (a server-first protocol) goes on
          // without SNI after the listener filter timeout instead of being closed.
          listener.set_continue_on_listener_filters_timeout(true);
          auto* inspector = listener.add_listener_filters();
          inspector->set_name("envoy.filters.listener.tls_inspector");
          inspector->mutable_typed_config()->PackFrom(
              envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector());
        }
      }
    }
  }

  Listener& outbound = by_name[std::string(kVirtualOutbound)];
  outbound.set_name(std::string(kVirtualOutbound));
  SetAddress(outbound, "0.0.0.0", kVirtualOutboundPort);
  outbound.mutable_use_original_dst()->set_value(true);
  outbound.set_traffic_direction(envoy::config::core::v3::OUTBOUND);
  auto* original_dst = outbound.add_listener_filters();
  original_dst->set_name("envoy.filters.listener.original_dst");
  original_dst->mutable_typed_config()->PackFrom(
      envoy::extensions::filters::listener::original_dst::v3::OriginalDst());
  // Destinations outside the mesh pass through (Istio's outboundTrafficPolicy ALLOW_ANY).
  auto* passthrough = outbound.mutable_default_filter_chain();
  passthrough->set_name(std::string(kPassthroughCluster));
  *passthrough->add_filters() = TcpProxyFilter(kPassthroughCluster, kPassthroughCluster);

  std::vector<Listener> listeners;
  for (auto& [name, listener] : by_name) listeners.push_back(std::move(listener));
  return listeners;
}

// Proxyless gRPC clients dial `xds:///host:port` and ask for a Listener of exactly that
// name, so every host form the client may use gets one, all sharing the FQDN:PORT routes.
std::vector<Listener> GrpcApiListeners(const model::MeshState& state, const ProxyInfo& proxy) {
  std::vector<Listener> listeners;
  for (const auto& [key, service] : state.services) {
    for (const model::ServicePort& port : service.ports) {
      if (port.protocol == model::Protocol::kUdp) continue;
      std::string route_name = absl::StrCat(service.Hostname(), ":", port.port);
      auto hcm = RdsConnectionManager(route_name, route_name, /*proxyless_grpc=*/true);
      for (const std::string& host : HostAliases(service, proxy.namespace_)) {
        Listener listener;
        listener.set_name(absl::StrCat(host, ":", port.port));
        listener.mutable_api_listener()->mutable_api_listener()->PackFrom(hcm);
        listeners.push_back(std::move(listener));
      }
    }
  }
  std::sort(listeners.begin(), listeners.end(),
            [](const Listener& a, const Listener& b) { return a.name() < b.name(); });
  return listeners;
}

}  // namespace

std::vector<Listener> BuildListeners(const model::MeshState& state, const ProxyInfo& proxy) {
  return proxy.proxyless_grpc ? GrpcApiListeners(state, proxy) : SidecarListeners(state, proxy);
}

}  // namespace meshpilot::translator
