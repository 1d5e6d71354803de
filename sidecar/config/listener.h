#pragma once

// A Listener parsed into plain structs: its address, whether it binds, whether it hands
// connections over by original destination, whether it inspects TLS ClientHellos, and its
// filter chains with their matches, each ending in either the HTTP connection manager (routes
// by RDS name or inline) or the TCP proxy.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "absl/status/statusor.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "sidecar/config/cidr.h"
#include "sidecar/config/route.h"
#include "sidecar/filters/rbac.h"

namespace meshpilot::sidecar::config {

class TlsTransportSocket;  // config/tls.h

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
  // common_http_protocol_options.max_connection_duration (0: none) and
  // max_requests_per_connection (0: no limit): past either, an HTTP/1.1 connection closes
  // after its response (at once if idle), an HTTP/2 one drains (see drain_timeout).
  std::chrono::milliseconds max_connection_duration{0};
  uint32_t max_requests_per_connection = 0;
  // common_http_protocol_options.max_stream_duration: a request's limit when its route sets
  // none (RouteAction.max_stream_duration).
  std::optional<std::chrono::milliseconds> max_stream_duration;
  // drain_timeout: an HTTP/2 connection that drains sends GOAWAY with the highest stream id
  // (a notice: streams still come), and this long after, the final GOAWAY; it closes once its
  // streams are done (Envoy's default 5 s).
  std::chrono::milliseconds drain_timeout{5000};
  // http_protocol_options.enable_trailers: HTTP/1.1 responses carry trailers (chunked).
  bool enable_trailers = false;
  // upgrade_configs: the upgrade types (lower case, e.g. "websocket") and whether each is
  // enabled; a route's own upgrade_configs override (RouteAction::upgrades).
  std::map<std::string, bool> upgrades;
  // istio.metadata_exchange (io.istio.http.peer_metadata.Config in a TypedStruct): which of
  // its istio_headers methods are on (istio_peer.h).
  struct PeerExchange {
    bool from_request = false;   // downstream_discovery: read and strip the client's pair
    bool to_response = false;    // downstream_propagation: answer with this proxy's
    bool from_response = false;  // upstream_discovery: read and strip the server's answer
    bool to_request = false;     // upstream_propagation: send this proxy's pair upstream
  };
  PeerExchange peer_exchange;
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

// Envoy's filter_chain_match. Empty fields match anything; set ones must match, and among the
// chains that do, the most specific wins criterion by criterion (see ListenerConfig::ChainFor).
struct FilterChainMatch {
  enum class SourceType { kAny, kSameIpOrLoopback, kExternal };
  uint32_t destination_port = 0;  // 0: any
  std::vector<Cidr> prefix_ranges;  // destination IP
  // Lower-cased; "*.example.com" matches any name ending in ".example.com".
  std::vector<std::string> server_names;
  std::string transport_protocol;  // "tls" or "raw_buffer"
  std::vector<std::string> application_protocols;
  std::vector<Cidr> direct_source_prefix_ranges;
  SourceType source_type = SourceType::kAny;
  std::vector<Cidr> source_prefix_ranges;
  std::vector<uint32_t> source_ports;
};

// What filter chain matching looks at: the connection and what the listener filters found.
struct ConnectionMatchInput {
  boost::asio::ip::tcp::endpoint destination;  // original destination
  boost::asio::ip::tcp::endpoint source;       // the peer (meshproxy reads no PROXY protocol)
  std::string_view server_name;                // lower-case SNI, empty without
  std::string_view transport_protocol = "raw_buffer";
  const std::vector<std::string>* application_protocols = nullptr;  // ALPN, may be null
};

struct FilterChain {
  std::string name;
  FilterChainMatch match;
  // envoy.filters.network.rbac filters before the terminal filter: a connection must pass
  // each of them, or it is closed.
  std::vector<std::shared_ptr<const filters::RbacFilter>> rbac;
  // transport_socket envoy.transport_sockets.tls: the chain terminates TLS (null: plaintext).
  std::shared_ptr<const TlsTransportSocket> tls;
  std::variant<HttpChain, TcpProxyChain> filter;
  uint64_t fingerprint = 0;  // a hash of its proto's bytes
};

// A listener filter's filter_disabled (Envoy's ListenerFilterChainMatchPredicate), on the
// connection's destination port.
struct ListenerFilterPredicate {
  enum class Kind { kAny, kOr, kAnd, kNot, kPortRange };
  Kind kind = Kind::kAny;
  std::vector<ListenerFilterPredicate> rules;  // kOr, kAnd; kNot: its one rule
  uint32_t start = 0, end = 0;                 // kPortRange: [start, end)
  bool Matches(uint32_t port) const;
};

// A listener filter meshproxy runs (tls_inspector, http_inspector): whether the listener has
// it, and the connections it skips.
struct ListenerFilter {
  bool enabled = false;
  std::optional<ListenerFilterPredicate> disabled;
  bool RunsFor(uint32_t destination_port) const {
    return enabled && !(disabled && disabled->Matches(destination_port));
  }
};

struct ListenerConfig {
  std::string name;
  boost::asio::ip::tcp::endpoint address;
  bool bind_to_port = true;
  bool use_original_dst = false;
  bool inbound = false;  // traffic_direction INBOUND: istio_requests_total's reporter="destination"
  // envoy.filters.listener.tls_inspector (peek the ClientHello for SNI and ALPN) and
  // http_inspector (peek a plaintext connection for HTTP/1.x or the h2c preface: the
  // application protocol) first, for at most listener_filters_timeout; then go on without
  // what they did not find, or close the connection.
  ListenerFilter tls_inspector;
  ListenerFilter http_inspector;
  std::chrono::milliseconds listener_filters_timeout{15000};  // Envoy's default; 0: none
  bool continue_on_listener_filters_timeout = false;
  std::vector<FilterChain> chains;
  std::optional<FilterChain> default_chain;
  uint64_t fingerprint = 0;  // a hash of its proto's bytes but its filter chains'

  // Whether the connections `old` gave the chain of `http` carry on under this version of
  // the listener, as Envoy's filter-chain-only update: the listener's own settings are the
  // same and the chain is still here, byte for byte; else they drain.
  bool Keeps(const ListenerConfig& old, const HttpChain& http) const;

  // The chain for a connection, as Envoy picks it: criterion by criterion in the order
  // destination port, destination IP, server name, transport protocol, application
  // protocols, direct source IP, source type, source IP, source port, only the chains most
  // specific for the connection on one go on to the next (an exact server name beats the
  // longest matching wildcard, which beats none; the longest matching prefix wins; a set
  // port, protocol or type beats an unset one), without backtracking. The first survivor, else
  // the default chain; null when none applies.
  const FilterChain* ChainFor(const ConnectionMatchInput& input) const;
};

absl::StatusOr<std::shared_ptr<const ListenerConfig>> ParseListener(
    const envoy::config::listener::v3::Listener& proto);

}  // namespace meshpilot::sidecar::config
