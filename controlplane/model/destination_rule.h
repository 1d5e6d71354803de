#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "controlplane/model/object_meta.h"

namespace meshpilot::model {

struct ConsistentHashLb {
  struct HttpCookie {
    std::string name;
    std::string path;
    std::optional<std::chrono::milliseconds> ttl;
  };
  struct RingHash {
    uint64_t minimum_ring_size = 0;  // 0: Envoy's default
  };
  struct Maglev {
    uint64_t table_size = 0;
  };

  // The hash key: exactly one of these four is set.
  std::string http_header_name;
  std::optional<HttpCookie> http_cookie;
  bool use_source_ip = false;
  std::string http_query_parameter_name;

  // The hash algorithm; neither set means ring hash with defaults. The deprecated top-level
  // `minimumRingSize` is read into ring_hash, which is what it always meant.
  std::optional<RingHash> ring_hash;
  std::optional<Maglev> maglev;
};

struct LocalityLbSetting {
  // Traffic from locality `from` is spread over `to` localities by weight (summing to 100).
  struct Distribute {
    std::string from;
    std::map<std::string, uint32_t> to;
  };
  struct Failover {
    std::string from;
    std::string to;
  };
  std::vector<Distribute> distribute;
  std::vector<Failover> failover;
  std::vector<std::string> failover_priority;  // label keys, most significant first
  std::optional<bool> enabled;
};

struct WarmupConfiguration {
  std::chrono::milliseconds duration{0};
  std::optional<double> minimum_percent;
  std::optional<double> aggression;
};

struct LoadBalancerSettings {
  enum class Simple { kUnspecified, kLeastConn, kRandom, kPassthrough, kRoundRobin, kLeastRequest };
  // At most one of simple and consistent_hash is set; neither means Istio's default,
  // LEAST_REQUEST.
  std::optional<Simple> simple;
  std::optional<ConsistentHashLb> consistent_hash;
  std::optional<LocalityLbSetting> locality_lb_setting;
  std::optional<std::chrono::milliseconds> warmup_duration;  // `warmupDurationSecs`
  std::optional<WarmupConfiguration> warmup;
};

struct ConnectionPoolSettings {
  struct Tcp {
    struct Keepalive {
      std::optional<uint32_t> probes;
      std::optional<std::chrono::milliseconds> time;
      std::optional<std::chrono::milliseconds> interval;
    };
    std::optional<int32_t> max_connections;
    std::optional<std::chrono::milliseconds> connect_timeout;
    std::optional<Keepalive> tcp_keepalive;
    std::optional<std::chrono::milliseconds> max_connection_duration;
    std::optional<std::chrono::milliseconds> idle_timeout;  // 0 disables the timeout
  };
  struct Http {
    enum class H2UpgradePolicy { kDefault, kDoNotUpgrade, kUpgrade };
    std::optional<int32_t> http1_max_pending_requests;
    std::optional<int32_t> http2_max_requests;
    std::optional<int32_t> max_requests_per_connection;
    std::optional<int32_t> max_retries;
    std::optional<std::chrono::milliseconds> idle_timeout;
    H2UpgradePolicy h2_upgrade_policy = H2UpgradePolicy::kDefault;
    bool use_client_protocol = false;
    std::optional<int32_t> max_concurrent_streams;
  };
  std::optional<Tcp> tcp;
  std::optional<Http> http;
};

struct OutlierDetection {
  bool split_external_local_origin_errors = false;
  std::optional<uint32_t> consecutive_local_origin_failures;
  std::optional<uint32_t> consecutive_gateway_errors;
  std::optional<uint32_t> consecutive_5xx_errors;
  std::optional<std::chrono::milliseconds> interval;
  std::optional<std::chrono::milliseconds> base_ejection_time;
  std::optional<int32_t> max_ejection_percent;
  std::optional<int32_t> min_health_percent;
};

struct ClientTlsSettings {
  enum class Mode { kDisable, kSimple, kMutual, kIstioMutual };
  Mode mode = Mode::kDisable;
  std::string client_certificate;
  std::string private_key;
  std::string ca_certificates;
  std::string credential_name;
  std::vector<std::string> subject_alt_names;
  std::string sni;
  std::optional<bool> insecure_skip_verify;
  std::string ca_crl;
};

struct TunnelSettings {
  std::string protocol;  // "CONNECT" (default) or "POST"
  std::string target_host;
  uint32_t target_port = 0;
};

struct ProxyProtocol {
  enum class Version { kV1, kV2 };
  Version version = Version::kV1;
};

// Settings for one service port; they override the enclosing TrafficPolicy's.
struct PortTrafficPolicy {
  uint32_t port = 0;
  std::optional<LoadBalancerSettings> load_balancer;
  std::optional<ConnectionPoolSettings> connection_pool;
  std::optional<OutlierDetection> outlier_detection;
  std::optional<ClientTlsSettings> tls;
};

struct TrafficPolicy {
  std::optional<LoadBalancerSettings> load_balancer;
  std::optional<ConnectionPoolSettings> connection_pool;
  std::optional<OutlierDetection> outlier_detection;
  std::optional<ClientTlsSettings> tls;
  std::vector<PortTrafficPolicy> port_level_settings;
  std::optional<TunnelSettings> tunnel;
  std::optional<ProxyProtocol> proxy_protocol;
};

struct Subset {
  std::string name;
  std::map<std::string, std::string> labels;
  std::optional<TrafficPolicy> traffic_policy;  // overrides the rule's, field by field
};

// networking.istio.io DestinationRule (v1, v1beta1 and v1alpha3 share this shape).
struct DestinationRule {
  ObjectMeta meta;
  std::string host;
  std::optional<TrafficPolicy> traffic_policy;
  std::vector<Subset> subsets;
  std::vector<std::string> export_to;
  // workloadSelector.matchLabels; the rule then applies only to those workloads' sidecars.
  std::optional<std::map<std::string, std::string>> workload_selector;
};

}  // namespace meshpilot::model
