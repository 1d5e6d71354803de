#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "controlplane/model/mesh_state.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "translator/proxy.h"

// The proxy's own workload, as a server: what istiod builds for inbound traffic.
namespace meshpilot::translator {

inline constexpr std::string_view kVirtualInbound = "virtualInbound";
inline constexpr std::string_view kVirtualInboundCatchAllHttp = "virtualInbound-catchall-http";
inline constexpr uint32_t kVirtualInboundPort = 15006;
inline constexpr std::string_view kInboundPassthroughCluster = "InboundPassthroughClusterIpv4";
// gRPC xDS servers ask for the Listener named by their bootstrap's
// server_listener_resource_name_template with %s replaced by "IP:PORT".
inline constexpr std::string_view kGrpcServerListenerPrefix =
    "grpc/server?xds.resource.listening_address=";

// A port the proxy's workload serves: the target port of an endpoint with the proxy's IP.
struct InboundPort {
  uint32_t port = 0;
  model::Protocol protocol = model::Protocol::kTcp;
};

// The workload's ports, found as istiod finds a proxy's service targets: endpoints of any
// Service whose address is the proxy's IP. Sorted by port; the first Service (by
// namespace/name) decides the protocol of a port several declare.
std::vector<InboundPort> InboundPorts(const model::MeshState& state, const ProxyInfo& proxy);

// inbound|PORT||
std::string InboundClusterName(uint32_t port);

// Sidecars: virtualInbound (0.0.0.0:15006, original destination) with a filter chain per
// inbound port, matched on destination_port (HTTP: HttpConnectionManager with an inline route
// to inbound|PORT||; TCP: tcp_proxy), RBAC filters of the policies selecting the workload
// first, and Istio's catch-all chains for ports no Service declares: HTTP/1.1 and h2c (found by
// the http_inspector) through an HttpConnectionManager (virtualInbound-catchall-http), other
// plaintext and TLS as TCP (virtualInbound), all to the passthrough cluster. Listener filters
// original_dst, tls_inspector (filter_disabled on HTTP ports) and http_inspector
// (filter_disabled on every declared port: meshpilot does not sniff declared ports).
envoy::config::listener::v3::Listener VirtualInboundListener(const model::MeshState& state,
                                                             const ProxyInfo& proxy);

// Sidecars: a STATIC inbound|PORT|| cluster to 127.0.0.1:PORT per inbound port, and the
// inbound passthrough cluster.
std::vector<envoy::config::cluster::v3::Cluster> InboundClusters(const model::MeshState& state,
                                                                 const ProxyInfo& proxy);

// Proxyless gRPC servers: per inbound port, `grpc/server?xds.resource.listening_address=IP:PORT`
// for the proxy's IP and for 0.0.0.0 and [::] (servers that listen on every address), each
// one filter chain whose HttpConnectionManager has an inline route with the non-forwarding
// action gRPC servers need, and the RBAC filters before the router.
std::vector<envoy::config::listener::v3::Listener> GrpcServerListeners(
    const model::MeshState& state, const ProxyInfo& proxy);

}  // namespace meshpilot::translator
