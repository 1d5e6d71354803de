#pragma once

// Cluster and ClusterLoadAssignment parsed into plain structs. Endpoints keep only the healthy
// ones (health_status UNKNOWN or HEALTHY) of the highest-priority level that has any.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "absl/status/statusor.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"

namespace meshpilot::sidecar::config {

class TlsTransportSocket;  // config/tls.h

// kRingHash and kMaglev are consistent hashing by the route's hash policy.
enum class LbPolicy { kRoundRobin, kLeastRequest, kRandom, kRingHash, kMaglev };
enum class DiscoveryType { kStatic, kEds, kOriginalDst };

// Envoy's default and largest maximum_ring_size.
inline constexpr uint64_t kMaxRingSize = 8388608;

struct Endpoint {
  boost::asio::ip::tcp::endpoint address;
  uint32_t weight = 1;
  std::string hostname;  // endpoint.hostname: what auto_host_rewrite sets :authority to
};

struct Locality {
  std::string zone;  // region/zone/sub_zone, for display
  uint32_t weight = 0;  // 0: the sum of its endpoints' weights
  std::vector<Endpoint> endpoints;  // the healthy ones (EDS health UNKNOWN or HEALTHY)
  uint32_t priority = 0;
  uint32_t unhealthy = 0;  // endpoints EDS gave another health status: they count in their
                           // priority's health (upstream/load_balancer.h), and take no traffic
};

struct EndpointSet {
  std::string cluster_name;
  std::vector<Locality> localities;  // by priority, lowest (most preferred) first
};

// circuit_breakers.thresholds of priority DEFAULT, with Envoy's defaults.
struct CircuitBreakers {
  uint32_t max_connections = 1024;
  uint32_t max_pending_requests = 1024;
  uint32_t max_requests = 1024;
  uint32_t max_retries = 3;
};

// The protocol meshproxy speaks to a cluster's hosts.
enum class UpstreamProtocol {
  kHttp1,
  kHttp2,       // h2c with prior knowledge
  kDownstream,  // whichever the downstream request came in (use_downstream_protocol_config)
  kAlpn,        // auto_config: HTTP/2 when TLS's ALPN chose h2, else HTTP/1.1
};

struct Http1Options {
  bool enable_trailers = false;  // read trailers of HTTP/1.1 responses
};

struct Http2Options {
  uint32_t max_concurrent_streams = 0;  // 0: as many as the peer allows
};

// outlier_detection, with Envoy's defaults: the consecutive-error detectors (on every result)
// and the success-rate and failure-percentage ones (over each `interval`).
struct OutlierDetection {
  uint32_t consecutive_5xx = 5;
  uint32_t enforcing_consecutive_5xx = 100;  // percent
  uint32_t consecutive_gateway_failure = 5;
  uint32_t enforcing_consecutive_gateway_failure = 0;  // percent
  std::chrono::milliseconds base_ejection_time{30000};
  std::chrono::milliseconds max_ejection_time{300000};
  uint32_t max_ejection_percent = 10;
  std::chrono::milliseconds interval{10000};
  uint32_t success_rate_minimum_hosts = 5;
  uint32_t success_rate_request_volume = 100;
  uint32_t success_rate_stdev_factor = 1900;  // thousandths of a standard deviation
  uint32_t enforcing_success_rate = 100;      // percent
  uint32_t failure_percentage_threshold = 85;
  uint32_t enforcing_failure_percentage = 0;  // percent
  uint32_t failure_percentage_minimum_hosts = 5;
  uint32_t failure_percentage_request_volume = 50;
  // Locally originated errors (connect failures, resets, timeouts) apart from the upstream's
  // 5xx: their own consecutive, success-rate and failure-percentage detectors.
  bool split_external_local_origin_errors = false;
  uint32_t consecutive_local_origin_failure = 5;
  uint32_t enforcing_consecutive_local_origin_failure = 100;  // percent
  uint32_t enforcing_local_origin_success_rate = 100;         // percent
  uint32_t enforcing_failure_percentage_local_origin = 0;     // percent
  // common_lb_config.healthy_panic_threshold (percent): with fewer hosts than this not ejected,
  // all of them take traffic; 0 turns panic mode off (Istio's default without minHealthPercent).
  double healthy_panic_threshold = 50;
};

// upstream_connection_options.tcp_keepalive: SO_KEEPALIVE on upstream sockets; a field left
// unset keeps the kernel's default (net.ipv4.tcp_keepalive_*).
struct TcpKeepalive {
  std::optional<uint32_t> probes;    // TCP_KEEPCNT
  std::optional<uint32_t> time;      // TCP_KEEPIDLE, seconds
  std::optional<uint32_t> interval;  // TCP_KEEPINTVL, seconds
};

// slow_start_config of round_robin_lb_config or least_request_lb_config: for `window` after a
// host joins, its weight is weight * max(min_weight_percent, time_factor^(1/aggression)) with
// time_factor = max(elapsed, 1ms) / window (Envoy's slow start mode).
struct SlowStart {
  std::chrono::milliseconds window{0};
  double aggression = 1.0;
  double min_weight_percent = 10;
};

struct ClusterConfig {
  std::string name;
  DiscoveryType type = DiscoveryType::kEds;
  std::string eds_service_name;  // EDS: the ClusterLoadAssignment to subscribe to
  // eds_config.initial_fetch_timeout: the cluster warms this long at most for its
  // ClusterLoadAssignment (Envoy's default 15 s; 0: until it arrives).
  std::chrono::milliseconds eds_initial_fetch_timeout{15000};
  LbPolicy lb_policy = LbPolicy::kRoundRobin;
  uint32_t choice_count = 2;  // LEAST_REQUEST
  uint64_t ring_size = 1024;  // RING_HASH minimum_ring_size / MAGLEV table_size (capped)
  uint64_t max_ring_size = kMaxRingSize;  // RING_HASH maximum_ring_size
  std::chrono::milliseconds connect_timeout{5000};
  UpstreamProtocol protocol = UpstreamProtocol::kHttp1;
  Http1Options http1;
  Http2Options http2;
  // HttpProtocolOptions.common_http_protocol_options.idle_timeout: a connection without
  // requests this long is closed (Envoy's default 1 h; 0: never).
  std::chrono::milliseconds idle_timeout{std::chrono::hours(1)};
  // common_http_protocol_options.max_requests_per_connection: an HTTP/1.1 connection closes
  // after this many requests, an HTTP/2 one takes no more streams and drains (0: no limit).
  uint32_t max_requests_per_connection = 0;
  // common_http_protocol_options.max_connection_duration: an upstream connection older than
  // this closes after its request in flight (HTTP/1.1) or drains with GOAWAY (HTTP/2); 0: never.
  std::chrono::milliseconds max_connection_duration{0};
  std::optional<SlowStart> slow_start;  // ROUND_ROBIN and LEAST_REQUEST only
  std::optional<TcpKeepalive> tcp_keepalive;  // absent: no keepalive probes
  // transport_socket envoy.transport_sockets.tls: connections originate TLS (null: plaintext).
  std::shared_ptr<const TlsTransportSocket> tls;
  CircuitBreakers circuit_breakers;
  std::optional<OutlierDetection> outlier_detection;  // absent: no host is ever ejected
  std::shared_ptr<const EndpointSet> static_endpoints;  // STATIC: from load_assignment
};

absl::StatusOr<std::shared_ptr<const ClusterConfig>> ParseCluster(
    const envoy::config::cluster::v3::Cluster& proto);

absl::StatusOr<OutlierDetection> ParseOutlierDetection(
    const envoy::config::cluster::v3::OutlierDetection& proto);

// From typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
// (explicit_http_config, use_downstream_protocol_config), else the deprecated
// http2_protocol_options and protocol_selection fields; HTTP/1.1 when none asks otherwise.
absl::Status ParseUpstreamProtocol(const envoy::config::cluster::v3::Cluster& proto,
                                   ClusterConfig& cluster);

absl::StatusOr<std::shared_ptr<const EndpointSet>> ParseClusterLoadAssignment(
    const envoy::config::endpoint::v3::ClusterLoadAssignment& proto);

}  // namespace meshpilot::sidecar::config
