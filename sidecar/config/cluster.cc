#include "sidecar/config/cluster.h"

#include <algorithm>
#include <map>

#include <openssl/ssl.h>

#include "absl/strings/str_cat.h"
#include "sidecar/config/tls.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"
#include "sidecar/config/duration.h"

namespace meshpilot::sidecar::config {
namespace {

namespace cluster_v3 = envoy::config::cluster::v3;
namespace endpoint_v3 = envoy::config::endpoint::v3;

bool Healthy(envoy::config::core::v3::HealthStatus status) {
  return status == envoy::config::core::v3::UNKNOWN || status == envoy::config::core::v3::HEALTHY;
}

absl::StatusOr<std::shared_ptr<const EndpointSet>> ParseAssignment(
    const endpoint_v3::ClusterLoadAssignment& proto, const std::string& field) {
  auto set = std::make_shared<EndpointSet>();
  set->cluster_name = proto.cluster_name();
  // Priority -> its localities, which the load balancer spills over from one to the next as
  // their health goes (Envoy's priority levels: Istio's locality failover).
  std::map<uint32_t, std::vector<Locality>> by_priority;
  for (int l = 0; l < proto.endpoints_size(); ++l) {
    const endpoint_v3::LocalityLbEndpoints& group = proto.endpoints(l);
    const std::string lf = absl::StrCat(field, "endpoints[", l, "]");
    Locality locality;
    locality.zone = absl::StrCat(group.locality().region(), "/", group.locality().zone(), "/",
                                 group.locality().sub_zone());
    locality.weight = group.has_load_balancing_weight() ? group.load_balancing_weight().value() : 0;
    locality.priority = group.priority();
    for (int e = 0; e < group.lb_endpoints_size(); ++e) {
      const endpoint_v3::LbEndpoint& lb = group.lb_endpoints(e);
      const std::string ef = absl::StrCat(lf, ".lb_endpoints[", e, "]");
      if (!lb.has_endpoint()) {
        return absl::InvalidArgumentError(absl::StrCat(ef, ".endpoint: missing"));
      }
      const auto& sa = lb.endpoint().address().socket_address();
      boost::system::error_code ec;
      auto ip = boost::asio::ip::make_address(sa.address(), ec);
      if (ec) {
        return absl::InvalidArgumentError(absl::StrCat(
            ef, ".endpoint.address.socket_address.address: \"", sa.address(),
            "\" is not an IP address"));
      }
      if (sa.port_value() == 0 || sa.port_value() > 65535) {
        return absl::InvalidArgumentError(absl::StrCat(
            ef, ".endpoint.address.socket_address.port_value: must be in [1, 65535]"));
      }
      uint32_t weight = lb.has_load_balancing_weight() ? lb.load_balancing_weight().value() : 1;
      if (weight == 0) {
        return absl::InvalidArgumentError(absl::StrCat(ef, ".load_balancing_weight: must be >= 1"));
      }
      if (!Healthy(lb.health_status())) {
        ++locality.unhealthy;
        continue;
      }
      locality.endpoints.push_back(
          Endpoint{boost::asio::ip::tcp::endpoint(ip, static_cast<uint16_t>(sa.port_value())),
                   weight, lb.endpoint().hostname()});
    }
    if (!locality.endpoints.empty() || locality.unhealthy != 0) {
      by_priority[group.priority()].push_back(std::move(locality));
    }
  }
  for (auto& [priority, localities] : by_priority) {
    for (Locality& locality : localities) set->localities.push_back(std::move(locality));
  }
  return std::shared_ptr<const EndpointSet>(std::move(set));
}

bool IsPrime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d) {
    if (n % d == 0) return false;
  }
  return true;
}

absl::StatusOr<std::optional<SlowStart>> ParseSlowStart(
    const cluster_v3::Cluster::SlowStartConfig& proto, const std::string& field) {
  SlowStart slow_start;
  slow_start.window = ToMillis(proto.slow_start_window());
  if (slow_start.window.count() <= 0) return std::nullopt;  // Envoy: no slow start
  if (proto.has_aggression()) {
    slow_start.aggression = proto.aggression().default_value();
    if (!(slow_start.aggression > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".aggression.default_value: must be > 0"));
    }
  }
  if (proto.has_min_weight_percent()) {
    slow_start.min_weight_percent = proto.min_weight_percent().value();
    if (!(slow_start.min_weight_percent >= 0 && slow_start.min_weight_percent <= 100)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".min_weight_percent.value: must be in [0, 100]"));
    }
  }
  return slow_start;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const EndpointSet>> ParseClusterLoadAssignment(
    const endpoint_v3::ClusterLoadAssignment& proto) {
  if (proto.cluster_name().empty()) {
    return absl::InvalidArgumentError("cluster_name: empty");
  }
  return ParseAssignment(proto, "");
}

absl::Status ParseUpstreamProtocol(const envoy::config::cluster::v3::Cluster& proto,
                                   ClusterConfig& cluster) {
  using envoy::config::core::v3::Http2ProtocolOptions;
  auto http2 = [&](const Http2ProtocolOptions& options) {
    if (options.has_max_concurrent_streams()) {
      cluster.http2.max_concurrent_streams = options.max_concurrent_streams().value();
    }
  };
  constexpr char kOptions[] = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
  if (auto it = proto.typed_extension_protocol_options().find(kOptions);
      it != proto.typed_extension_protocol_options().end()) {
    const std::string field = absl::StrCat("typed_extension_protocol_options[", kOptions, "]");
    envoy::extensions::upstreams::http::v3::HttpProtocolOptions options;
    if (!it->second.UnpackTo(&options)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": cannot unpack ", it->second.type_url()));
    }
    if (options.common_http_protocol_options().has_max_requests_per_connection()) {
      cluster.max_requests_per_connection =
          options.common_http_protocol_options().max_requests_per_connection().value();
    }
    if (options.common_http_protocol_options().has_max_connection_duration()) {
      cluster.max_connection_duration =
          ToMillis(options.common_http_protocol_options().max_connection_duration());
    }
    if (options.common_http_protocol_options().has_idle_timeout()) {
      cluster.idle_timeout = ToMillis(options.common_http_protocol_options().idle_timeout());
    }
    switch (options.upstream_protocol_options_case()) {
      case envoy::extensions::upstreams::http::v3::HttpProtocolOptions::kExplicitHttpConfig:
        cluster.http1.enable_trailers =
            options.explicit_http_config().http_protocol_options().enable_trailers();
        if (options.explicit_http_config().has_http2_protocol_options()) {
          cluster.protocol = UpstreamProtocol::kHttp2;
          http2(options.explicit_http_config().http2_protocol_options());
        } else if (options.explicit_http_config().has_http3_protocol_options()) {
          return absl::InvalidArgumentError(absl::StrCat(
              field, ".explicit_http_config.http3_protocol_options: HTTP/3 is not supported"));
        } else {
          cluster.protocol = UpstreamProtocol::kHttp1;
        }
        return absl::OkStatus();
      case envoy::extensions::upstreams::http::v3::HttpProtocolOptions::
          kUseDownstreamProtocolConfig:
        cluster.protocol = UpstreamProtocol::kDownstream;
        cluster.http1.enable_trailers =
            options.use_downstream_protocol_config().http_protocol_options().enable_trailers();
        http2(options.use_downstream_protocol_config().http2_protocol_options());
        return absl::OkStatus();
      case envoy::extensions::upstreams::http::v3::HttpProtocolOptions::kAutoConfig:
        if (options.auto_config().has_http3_protocol_options()) {
          return absl::InvalidArgumentError(absl::StrCat(
              field, ".auto_config.http3_protocol_options: HTTP/3 is not supported"));
        }
        cluster.protocol = UpstreamProtocol::kAlpn;
        cluster.http1.enable_trailers =
            options.auto_config().http_protocol_options().enable_trailers();
        http2(options.auto_config().http2_protocol_options());
        return absl::OkStatus();
      default:
        break;  // only common options: the deprecated fields decide
    }
  }
  cluster.http1.enable_trailers = proto.http_protocol_options().enable_trailers();
  if (proto.common_http_protocol_options().has_max_requests_per_connection()) {
    cluster.max_requests_per_connection =
        proto.common_http_protocol_options().max_requests_per_connection().value();
  } else if (proto.has_max_requests_per_connection()) {
    cluster.max_requests_per_connection = proto.max_requests_per_connection().value();
  }
  if (proto.common_http_protocol_options().has_max_connection_duration()) {
    cluster.max_connection_duration =
        ToMillis(proto.common_http_protocol_options().max_connection_duration());
  }
  if (proto.has_http2_protocol_options()) {
    cluster.protocol = UpstreamProtocol::kHttp2;
    http2(proto.http2_protocol_options());
  }
  if (proto.protocol_selection() == envoy::config::cluster::v3::Cluster::USE_DOWNSTREAM_PROTOCOL) {
    cluster.protocol = UpstreamProtocol::kDownstream;
  }
  return absl::OkStatus();
}

absl::StatusOr<OutlierDetection> ParseOutlierDetection(
    const envoy::config::cluster::v3::OutlierDetection& proto) {
  OutlierDetection od;
  auto percent = [](const google::protobuf::UInt32Value& value, const char* field,
                    uint32_t& out) -> absl::Status {
    if (value.value() > 100) {
      return absl::InvalidArgumentError(
          absl::StrCat("outlier_detection.", field, ": ", value.value(), " is over 100"));
    }
    out = value.value();
    return absl::OkStatus();
  };
  auto duration = [](const google::protobuf::Duration& value, const char* field,
                     std::chrono::milliseconds& out) -> absl::Status {
    const std::chrono::milliseconds ms = ToMillis(value);
    if (ms.count() <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("outlier_detection.", field, ": must be > 0"));
    }
    out = ms;
    return absl::OkStatus();
  };
  if (proto.has_consecutive_5xx()) od.consecutive_5xx = proto.consecutive_5xx().value();
  if (proto.has_consecutive_gateway_failure()) {
    od.consecutive_gateway_failure = proto.consecutive_gateway_failure().value();
  }
  absl::Status status;
  if (proto.has_enforcing_consecutive_5xx()) {
    status.Update(percent(proto.enforcing_consecutive_5xx(), "enforcing_consecutive_5xx",
                          od.enforcing_consecutive_5xx));
  }
  if (proto.has_enforcing_consecutive_gateway_failure()) {
    status.Update(percent(proto.enforcing_consecutive_gateway_failure(),
                          "enforcing_consecutive_gateway_failure",
                          od.enforcing_consecutive_gateway_failure));
  }
  if (proto.has_max_ejection_percent()) {
    status.Update(
        percent(proto.max_ejection_percent(), "max_ejection_percent", od.max_ejection_percent));
  }
  if (proto.has_base_ejection_time()) {
    status.Update(duration(proto.base_ejection_time(), "base_ejection_time", od.base_ejection_time));
  }
  if (proto.has_max_ejection_time()) {
    status.Update(duration(proto.max_ejection_time(), "max_ejection_time", od.max_ejection_time));
  }
  if (proto.has_interval()) status.Update(duration(proto.interval(), "interval", od.interval));
  auto count = [](const google::protobuf::UInt32Value& value, uint32_t& out) { out = value.value(); };
  if (proto.has_success_rate_minimum_hosts()) {
    count(proto.success_rate_minimum_hosts(), od.success_rate_minimum_hosts);
  }
  if (proto.has_success_rate_request_volume()) {
    count(proto.success_rate_request_volume(), od.success_rate_request_volume);
  }
  if (proto.has_success_rate_stdev_factor()) {
    count(proto.success_rate_stdev_factor(), od.success_rate_stdev_factor);
  }
  if (proto.has_enforcing_success_rate()) {
    status.Update(percent(proto.enforcing_success_rate(), "enforcing_success_rate",
                          od.enforcing_success_rate));
  }
  if (proto.has_failure_percentage_threshold()) {
    status.Update(percent(proto.failure_percentage_threshold(), "failure_percentage_threshold",
                          od.failure_percentage_threshold));
  }
  if (proto.has_enforcing_failure_percentage()) {
    status.Update(percent(proto.enforcing_failure_percentage(), "enforcing_failure_percentage",
                          od.enforcing_failure_percentage));
  }
  od.split_external_local_origin_errors = proto.split_external_local_origin_errors();
  if (proto.has_consecutive_local_origin_failure()) {
    count(proto.consecutive_local_origin_failure(), od.consecutive_local_origin_failure);
  }
  if (proto.has_enforcing_consecutive_local_origin_failure()) {
    status.Update(percent(proto.enforcing_consecutive_local_origin_failure(),
                          "enforcing_consecutive_local_origin_failure",
                          od.enforcing_consecutive_local_origin_failure));
  }
  if (proto.has_enforcing_local_origin_success_rate()) {
    status.Update(percent(proto.enforcing_local_origin_success_rate(),
                          "enforcing_local_origin_success_rate",
                          od.enforcing_local_origin_success_rate));
  }
  if (proto.has_enforcing_failure_percentage_local_origin()) {
    status.Update(percent(proto.enforcing_failure_percentage_local_origin(),
                          "enforcing_failure_percentage_local_origin",
                          od.enforcing_failure_percentage_local_origin));
  }
  if (proto.has_failure_percentage_minimum_hosts()) {
    count(proto.failure_percentage_minimum_hosts(), od.failure_percentage_minimum_hosts);
  }
  if (proto.has_failure_percentage_request_volume()) {
    count(proto.failure_percentage_request_volume(), od.failure_percentage_request_volume);
  }
  if (!status.ok()) return status;
  return od;
}

absl::StatusOr<std::shared_ptr<const ClusterConfig>> ParseCluster(
    const cluster_v3::Cluster& proto) {
  auto cluster = std::make_shared<ClusterConfig>();
  cluster->name = proto.name();
  if (cluster->name.empty()) return absl::InvalidArgumentError("name: empty");
  switch (proto.type()) {
    case cluster_v3::Cluster::STATIC:
      cluster->type = DiscoveryType::kStatic;
      break;
    case cluster_v3::Cluster::EDS:
      cluster->type = DiscoveryType::kEds;
      if (proto.eds_cluster_config().has_eds_config() &&
          !proto.eds_cluster_config().eds_config().has_ads()) {
        return absl::InvalidArgumentError(
            "eds_cluster_config.eds_config: only ads config sources are supported");
      }
      if (proto.eds_cluster_config().eds_config().has_initial_fetch_timeout()) {
        cluster->eds_initial_fetch_timeout =
            ToMillis(proto.eds_cluster_config().eds_config().initial_fetch_timeout());
      }
      cluster->eds_service_name = proto.eds_cluster_config().service_name().empty()
                                      ? proto.name()
                                      : proto.eds_cluster_config().service_name();
      break;
    case cluster_v3::Cluster::ORIGINAL_DST:
      cluster->type = DiscoveryType::kOriginalDst;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "type: ", cluster_v3::Cluster::DiscoveryType_Name(proto.type()),
          " is not supported (STATIC, EDS, ORIGINAL_DST)"));
  }
  if (proto.has_cluster_type()) {
    return absl::InvalidArgumentError("cluster_type: custom cluster types are not supported");
  }
  switch (proto.lb_policy()) {
    case cluster_v3::Cluster::ROUND_ROBIN:
      cluster->lb_policy = LbPolicy::kRoundRobin;
      break;
    case cluster_v3::Cluster::LEAST_REQUEST:
      cluster->lb_policy = LbPolicy::kLeastRequest;
      if (proto.least_request_lb_config().has_choice_count()) {
        cluster->choice_count = proto.least_request_lb_config().choice_count().value();
        if (cluster->choice_count < 2) {
          return absl::InvalidArgumentError(
              "least_request_lb_config.choice_count: must be >= 2");
        }
      }
      break;
    case cluster_v3::Cluster::RANDOM:
      cluster->lb_policy = LbPolicy::kRandom;
      break;
    case cluster_v3::Cluster::CLUSTER_PROVIDED:
      if (cluster->type != DiscoveryType::kOriginalDst) {
        return absl::InvalidArgumentError("lb_policy: CLUSTER_PROVIDED needs type ORIGINAL_DST");
      }
      break;
    case cluster_v3::Cluster::RING_HASH:
      cluster->lb_policy = LbPolicy::kRingHash;
      if (proto.ring_hash_lb_config().has_minimum_ring_size()) {
        cluster->ring_size = proto.ring_hash_lb_config().minimum_ring_size().value();
      }
      if (proto.ring_hash_lb_config().has_maximum_ring_size()) {
        cluster->max_ring_size = proto.ring_hash_lb_config().maximum_ring_size().value();
      }
      if (cluster->ring_size == 0 || cluster->ring_size > cluster->max_ring_size ||
          cluster->max_ring_size > kMaxRingSize) {
        return absl::InvalidArgumentError(absl::StrCat(
            "ring_hash_lb_config: minimum_ring_size (", cluster->ring_size,
            ") and maximum_ring_size (", cluster->max_ring_size, ") must be in 1..",
            kMaxRingSize, ", the minimum at most the maximum"));
      }
      if (proto.ring_hash_lb_config().hash_function() !=
          cluster_v3::Cluster::RingHashLbConfig::XX_HASH) {
        return absl::InvalidArgumentError(
            "ring_hash_lb_config.hash_function: only XX_HASH is supported");
      }
      break;
    case cluster_v3::Cluster::MAGLEV:
      cluster->lb_policy = LbPolicy::kMaglev;
      cluster->ring_size = proto.maglev_lb_config().has_table_size()
                               ? proto.maglev_lb_config().table_size().value()
                               : 65537;
      // Envoy's rule: a host's walk over the table reaches every slot only when it is prime.
      if (!IsPrime(cluster->ring_size) || cluster->ring_size > 5000011) {
        return absl::InvalidArgumentError(
            absl::StrCat("maglev_lb_config.table_size: ", cluster->ring_size,
                         " is not a prime number up to 5000011"));
      }
      // Bounded like the ring (a slot per entry, shared by all workers): the largest prime
      // under 2^17.
      cluster->ring_size = std::min<uint64_t>(cluster->ring_size, 131071);
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "lb_policy: ", cluster_v3::Cluster::LbPolicy_Name(proto.lb_policy()),
          " is not supported yet (ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH, MAGLEV)"));
  }
  if (cluster->lb_policy == LbPolicy::kRoundRobin &&
      proto.round_robin_lb_config().has_slow_start_config()) {
    auto slow_start = ParseSlowStart(proto.round_robin_lb_config().slow_start_config(),
                                     "round_robin_lb_config.slow_start_config");
    if (!slow_start.ok()) return slow_start.status();
    cluster->slow_start = *slow_start;
  } else if (cluster->lb_policy == LbPolicy::kLeastRequest &&
             proto.least_request_lb_config().has_slow_start_config()) {
    auto slow_start = ParseSlowStart(proto.least_request_lb_config().slow_start_config(),
                                     "least_request_lb_config.slow_start_config");
    if (!slow_start.ok()) return slow_start.status();
    cluster->slow_start = *slow_start;
  }
  // Bounded: a ring entry per slot, shared by all workers.
  if (cluster->lb_policy == LbPolicy::kRingHash) {
    cluster->ring_size = std::clamp<uint64_t>(cluster->ring_size, 1, 1 << 17);
  }
  if (proto.has_connect_timeout()) {
    const std::chrono::milliseconds ms = ToMillis(proto.connect_timeout());
    if (ms.count() <= 0) return absl::InvalidArgumentError("connect_timeout: must be > 0");
    cluster->connect_timeout = ms;
  }
  for (const auto& thresholds : proto.circuit_breakers().thresholds()) {
    if (thresholds.priority() != envoy::config::core::v3::DEFAULT) continue;
    CircuitBreakers& cb = cluster->circuit_breakers;
    if (thresholds.has_max_connections()) cb.max_connections = thresholds.max_connections().value();
    if (thresholds.has_max_pending_requests()) {
      cb.max_pending_requests = thresholds.max_pending_requests().value();
    }
    if (thresholds.has_max_requests()) cb.max_requests = thresholds.max_requests().value();
    if (thresholds.has_max_retries()) cb.max_retries = thresholds.max_retries().value();
    break;
  }
  if (proto.has_outlier_detection()) {
    auto outlier = ParseOutlierDetection(proto.outlier_detection());
    if (!outlier.ok()) return outlier.status();
    cluster->outlier_detection = *outlier;
    if (proto.common_lb_config().has_healthy_panic_threshold()) {
      const double threshold = proto.common_lb_config().healthy_panic_threshold().value();
      if (threshold < 0 || threshold > 100) {
        return absl::InvalidArgumentError(absl::StrCat(
            "common_lb_config.healthy_panic_threshold: ", threshold, " is not in 0..100"));
      }
      cluster->outlier_detection->healthy_panic_threshold = threshold;
    }
  }
  if (auto status = ParseUpstreamProtocol(proto, *cluster); !status.ok()) return status;
  if (proto.has_transport_socket()) {
    // As Envoy: auto_config offers both protocols when the TLS context names none.
    auto tls = ParseUpstreamTransportSocket(proto.transport_socket(), "transport_socket",
                                            cluster->protocol == UpstreamProtocol::kAlpn);
    if (!tls.ok()) return tls.status();
    cluster->tls = *std::move(tls);
  }
  if (proto.upstream_connection_options().has_tcp_keepalive()) {
    const envoy::config::core::v3::TcpKeepalive& keepalive =
        proto.upstream_connection_options().tcp_keepalive();
    TcpKeepalive& out = cluster->tcp_keepalive.emplace();
    if (keepalive.has_keepalive_probes()) out.probes = keepalive.keepalive_probes().value();
    if (keepalive.has_keepalive_time()) out.time = keepalive.keepalive_time().value();
    if (keepalive.has_keepalive_interval()) out.interval = keepalive.keepalive_interval().value();
  }
  if (proto.has_load_assignment()) {
    auto endpoints = ParseAssignment(proto.load_assignment(), "load_assignment.");
    if (!endpoints.ok()) return endpoints.status();
    cluster->static_endpoints = *std::move(endpoints);
  } else if (cluster->type == DiscoveryType::kStatic) {
    cluster->static_endpoints = std::make_shared<const EndpointSet>();
  }
  return std::shared_ptr<const ClusterConfig>(std::move(cluster));
}

}  // namespace meshpilot::sidecar::config
