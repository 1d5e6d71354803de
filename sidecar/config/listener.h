#pragma once

// A Listener parsed into plain structs: its address, whether it binds, whether it hands
// connections over by original destination, and its filter chains, each ending in either the
// HTTP connection manager (routes by RDS name or inline) or the TCP proxy.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "absl/status/statusor.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "sidecar/config/route.h"
#include "sidecar/filters/rbac.h"

namespace meshpilot::sidecar::config {

struct HttpChain {
  // codec_type: AUTO tells HTTP/2 (the client preface "PRI * HTTP/2.0") from HTTP/1.1.
  enum class Codec { kAuto, kHttp1, kHttp2 };
  std::string stat_prefix;
  Codec codec = Codec::kAuto;
  // envoy.filters.http.rbac filters, in order: a request must pass each of them.
  std::vector<std::shared_ptr<const filters::RbacFilter>> rbac;
  std::string rds_name;                            // or:
  std::shared_ptr<const RouteTable> inline_routes;
  // rds.config_source.initial_fetch_timeout: the listener warms this long at most for its
  // RouteConfiguration (Envoy's default 15 s; 0: until it arrives).
  std::chrono::milliseconds rds_initial_fetch_timeout{15000};
  // common_http_protocol_options.idle_timeout: a connection without requests this long is
  // closed, HTTP/2 with GOAWAY (Envoy's default 1 h; 0: never).
  std::chrono::milliseconds idle_timeout{std::chrono::hours(1)};
  // http_protocol_options.enable_trailers: HTTP/1.1 responses carry trailers (chunked).
  bool enable_trailers = false;
};

struct TcpProxyChain {
  std::string stat_prefix;
  // No byte either way for this long closes both sides (Envoy's default: 1 h; 0: never).
  std::chrono::milliseconds idle_timeout{std::chrono::hours(1)};
  bool hash_source_ip = false;  // hash_policy source_ip: a ring hash cluster picks by peer IP
  std::string cluster;                   // or:
  std::vector<WeightedCluster> weighted;
  uint64_t total_weight = 0;
};

struct FilterChain {
  std::string name;
  uint32_t destination_port = 0;  // 0: any
  // envoy.filters.network.rbac filters before the terminal filter: a connection must pass
  // each of them, or it is closed.
  std::vector<std::shared_ptr<const filters::RbacFilter>> rbac;
  std::variant<HttpChain, TcpProxyChain> filter;
};

struct ListenerConfig {
  std::string name;
  boost::asio::ip::tcp::endpoint address;
  bool bind_to_port = true;
  bool use_original_dst = false;
  bool inbound = false;  // traffic_direction INBOUND: istio_requests_total's reporter="destination"
  std::vector<FilterChain> chains;
  std::optional<FilterChain> default_chain;

  // The chain for a connection to `destination_port`: a chain naming that port, else the first
  // chain with no port, else the default chain; null when none applies.
  const FilterChain* ChainFor(uint16_t destination_port) const;
};

absl::StatusOr<std::shared_ptr<const ListenerConfig>> ParseListener(
    const envoy::config::listener::v3::Listener& proto);

}  // namespace meshpilot::sidecar::config
