#include "translator/traffic_policy.h"

#include <limits>

#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"
#include "translator/duration.h"
#include "translator/upstream_tls.h"

namespace meshpilot::translator {
namespace {

using envoy::config::cluster::v3::Cluster;
using LbSimple = model::LoadBalancerSettings::Simple;

void ApplyPortLevel(const model::TrafficPolicy& policy, uint32_t port,
                    ClusterTrafficPolicy& out) {
  for (const model::PortTrafficPolicy& level : policy.port_level_settings) {
    if (level.port != port) continue;
    out.load_balancer = level.load_balancer;
    out.connection_pool = level.connection_pool;
    out.outlier_detection = level.outlier_detection;
    out.tls = level.tls;
    return;
  }
}

// Istio: a consistentHash without ring_hash/maglev is a ring hash.
bool IsMaglev(const model::ConsistentHashLb& hash) { return hash.maglev.has_value(); }

// Istio's warmup (`warmup`, or the older `warmupDurationSecs`): Envoy's slow start for new
// endpoints, on the round robin and least request balancers it exists for.
void ApplyWarmup(const model::LoadBalancerSettings& lb, Cluster& cluster) {
  if (!lb.warmup && !lb.warmup_duration) return;
  Cluster::SlowStartConfig* config;
  if (cluster.lb_policy() == Cluster::ROUND_ROBIN) {
    config = cluster.mutable_round_robin_lb_config()->mutable_slow_start_config();
  } else if (cluster.lb_policy() == Cluster::LEAST_REQUEST) {
    config = cluster.mutable_least_request_lb_config()->mutable_slow_start_config();
  } else {
    return;  // reported by CheckDestinationRules
  }
  SetDuration(lb.warmup ? lb.warmup->duration : *lb.warmup_duration,
              *config->mutable_slow_start_window());
  if (lb.warmup && lb.warmup->aggression) {
    config->mutable_aggression()->set_default_value(*lb.warmup->aggression);
    config->mutable_aggression()->set_runtime_key("upstream.warmup.aggression");
  }
  if (lb.warmup && lb.warmup->minimum_percent) {
    config->mutable_min_weight_percent()->set_value(*lb.warmup->minimum_percent);
  }
}

void ApplyLoadBalancer(const model::LoadBalancerSettings& lb, const ProxyInfo& proxy,
                       Cluster& cluster) {
  const bool grpc = proxy.proxyless_grpc;
  if (lb.consistent_hash) {
    if (proxy.RingHashCrashes()) return;  // ROUND_ROBIN: a crash is worse than no affinity
    const model::ConsistentHashLb& hash = *lb.consistent_hash;
    if (IsMaglev(hash) && !grpc) {
      cluster.set_lb_policy(Cluster::MAGLEV);
      if (hash.maglev->table_size > 0) {
        cluster.mutable_maglev_lb_config()->mutable_table_size()->set_value(
            hash.maglev->table_size);
      }
      return;
    }
    // gRPC's xDS client knows RING_HASH, not MAGLEV: both hash on the same route policy.
    cluster.set_lb_policy(Cluster::RING_HASH);
    if (hash.ring_hash && hash.ring_hash->minimum_ring_size > 0) {
      cluster.mutable_ring_hash_lb_config()->mutable_minimum_ring_size()->set_value(
          hash.ring_hash->minimum_ring_size);
    }
    return;
  }
  if (!lb.simple || grpc) return;  // gRPC: ROUND_ROBIN is all it takes besides RING_HASH
  switch (*lb.simple) {
    case LbSimple::kRoundRobin: cluster.set_lb_policy(Cluster::ROUND_ROBIN); break;
    case LbSimple::kLeastConn:
    case LbSimple::kLeastRequest: cluster.set_lb_policy(Cluster::LEAST_REQUEST); break;
    case LbSimple::kRandom: cluster.set_lb_policy(Cluster::RANDOM); break;
    case LbSimple::kPassthrough:
      // Istio: connect to the address the caller asked for, skipping endpoint selection.
      cluster.set_type(Cluster::ORIGINAL_DST);
      cluster.set_lb_policy(Cluster::CLUSTER_PROVIDED);
      cluster.clear_eds_cluster_config();
      break;
    case LbSimple::kUnspecified: break;
  }
  ApplyWarmup(lb, cluster);
}

// Istio opens the circuit breakers fully unless connectionPool closes them.
void ApplyCircuitBreakers(const std::optional<model::ConnectionPoolSettings>& pool,
                          Cluster& cluster) {
  constexpr uint32_t kUnlimited = std::numeric_limits<uint32_t>::max();
  auto* thresholds = cluster.mutable_circuit_breakers()->add_thresholds();
  thresholds->mutable_max_connections()->set_value(kUnlimited);
  thresholds->mutable_max_pending_requests()->set_value(kUnlimited);
  thresholds->mutable_max_requests()->set_value(kUnlimited);
  thresholds->mutable_max_retries()->set_value(kUnlimited);
  thresholds->set_track_remaining(true);
  if (!pool) return;
  if (pool->tcp && pool->tcp->max_connections) {
    thresholds->mutable_max_connections()->set_value(*pool->tcp->max_connections);
  }
  if (pool->http) {
    if (pool->http->http1_max_pending_requests) {
      thresholds->mutable_max_pending_requests()->set_value(
          *pool->http->http1_max_pending_requests);
    }
    if (pool->http->http2_max_requests) {
      thresholds->mutable_max_requests()->set_value(*pool->http->http2_max_requests);
    }
    if (pool->http->max_retries) {
      thresholds->mutable_max_retries()->set_value(*pool->http->max_retries);
    }
  }
}

void ApplyTcpSettings(const model::ConnectionPoolSettings::Tcp& tcp, Cluster& cluster) {
  if (tcp.connect_timeout) SetDuration(*tcp.connect_timeout, *cluster.mutable_connect_timeout());
  if (tcp.tcp_keepalive) {
    auto* keepalive = cluster.mutable_upstream_connection_options()->mutable_tcp_keepalive();
    const auto& in = *tcp.tcp_keepalive;
    if (in.probes) keepalive->mutable_keepalive_probes()->set_value(*in.probes);
    if (in.time) {
      keepalive->mutable_keepalive_time()->set_value(
          std::chrono::duration_cast<std::chrono::seconds>(*in.time).count());
    }
    if (in.interval) {
      keepalive->mutable_keepalive_interval()->set_value(
          std::chrono::duration_cast<std::chrono::seconds>(*in.interval).count());
    }
  }
}

// Upstream HTTP settings, as Istio writes them: HTTP/2 to HTTP2 and gRPC ports (or when the
// rule asks to upgrade), the client's protocol with useClientProtocol, and the connection
// limits of connectionPool.
void ApplyHttpProtocolOptions(const std::optional<model::ConnectionPoolSettings>& pool,
                              const model::ServicePort& port, Cluster& cluster) {
  using H2Upgrade = model::ConnectionPoolSettings::Http::H2UpgradePolicy;
  envoy::extensions::upstreams::http::v3::HttpProtocolOptions options;
  const model::ConnectionPoolSettings::Http* http =
      pool && pool->http ? &*pool->http : nullptr;
  auto* common = options.mutable_common_http_protocol_options();
  if (http != nullptr) {
    if (http->idle_timeout) SetDuration(*http->idle_timeout, *common->mutable_idle_timeout());
    if (http->max_requests_per_connection) {
      common->mutable_max_requests_per_connection()->set_value(
          *http->max_requests_per_connection);
    }
  }
  if (pool && pool->tcp && pool->tcp->max_connection_duration) {
    SetDuration(*pool->tcp->max_connection_duration, *common->mutable_max_connection_duration());
  }
  const bool h2 = port.protocol == model::Protocol::kHttp2 ||
                  port.protocol == model::Protocol::kGrpc ||
                  (http != nullptr && http->h2_upgrade_policy == H2Upgrade::kUpgrade);
  if (http != nullptr && http->use_client_protocol) {
    auto* downstream = options.mutable_use_downstream_protocol_config();
    downstream->mutable_http_protocol_options();
    downstream->mutable_http2_protocol_options();
  } else if (h2) {
    auto* http2 = options.mutable_explicit_http_config()->mutable_http2_protocol_options();
    if (http != nullptr && http->max_concurrent_streams) {
      http2->mutable_max_concurrent_streams()->set_value(*http->max_concurrent_streams);
    }
  } else if (common->ByteSizeLong() > 0) {
    options.mutable_explicit_http_config()->mutable_http_protocol_options();
  }
  if (options.ByteSizeLong() == 0 ||
      (common->ByteSizeLong() == 0 && !options.has_explicit_http_config() &&
       !options.has_use_downstream_protocol_config())) {
    return;
  }
  if (common->ByteSizeLong() == 0) options.clear_common_http_protocol_options();
  (*cluster.mutable_typed_extension_protocol_options())
      ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
          .PackFrom(options);
}

void ApplyOutlierDetection(const model::OutlierDetection& in, Cluster& cluster) {
  auto* out = cluster.mutable_outlier_detection();
  // Istio turns success-rate ejection off: only the consecutive-error detectors run.
  out->mutable_enforcing_success_rate()->set_value(0);
  if (in.consecutive_5xx_errors) {
    out->mutable_consecutive_5xx()->set_value(*in.consecutive_5xx_errors);
    out->mutable_enforcing_consecutive_5xx()->set_value(*in.consecutive_5xx_errors > 0 ? 100 : 0);
  }
  if (in.consecutive_gateway_errors) {
    out->mutable_consecutive_gateway_failure()->set_value(*in.consecutive_gateway_errors);
    out->mutable_enforcing_consecutive_gateway_failure()->set_value(
        *in.consecutive_gateway_errors > 0 ? 100 : 0);
  }
  if (in.interval) SetDuration(*in.interval, *out->mutable_interval());
  if (in.base_ejection_time) {
    SetDuration(*in.base_ejection_time, *out->mutable_base_ejection_time());
  }
  if (in.max_ejection_percent && *in.max_ejection_percent > 0) {
    out->mutable_max_ejection_percent()->set_value(*in.max_ejection_percent);
  }
  if (in.split_external_local_origin_errors) {
    out->set_split_external_local_origin_errors(true);
    if (in.consecutive_local_origin_failures && *in.consecutive_local_origin_failures > 0) {
      out->mutable_consecutive_local_origin_failure()->set_value(
          *in.consecutive_local_origin_failures);
      out->mutable_enforcing_consecutive_local_origin_failure()->set_value(100);
    }
    out->mutable_enforcing_local_origin_success_rate()->set_value(0);
  }
  // Istio disables Envoy's panic threshold (50%) unless minHealthPercent says otherwise: with
  // few pods per service, panic mode would send traffic to ejected hosts.
  cluster.mutable_common_lb_config()->mutable_healthy_panic_threshold()->set_value(
      in.min_health_percent.value_or(0));
}

}  // namespace

ClusterTrafficPolicy ResolveTrafficPolicy(const model::DestinationRule* rule,
                                          const model::Subset* subset, uint32_t port) {
  ClusterTrafficPolicy out;
  if (rule != nullptr && rule->traffic_policy) {
    const model::TrafficPolicy& policy = *rule->traffic_policy;
    out = {policy.load_balancer, policy.connection_pool, policy.outlier_detection, policy.tls};
    ApplyPortLevel(policy, port, out);
  }
  if (subset != nullptr && subset->traffic_policy) {
    const model::TrafficPolicy& policy = *subset->traffic_policy;
    if (policy.load_balancer) out.load_balancer = policy.load_balancer;
    if (policy.connection_pool) out.connection_pool = policy.connection_pool;
    if (policy.outlier_detection) out.outlier_detection = policy.outlier_detection;
    if (policy.tls) out.tls = policy.tls;
    ApplyPortLevel(policy, port, out);
  }
  return out;
}

void ApplyTrafficPolicy(const ClusterTrafficPolicy& policy, const model::ServicePort& port,
                        const ProxyInfo& proxy, Cluster& cluster) {
  const bool grpc = proxy.proxyless_grpc;
  if (policy.load_balancer) ApplyLoadBalancer(*policy.load_balancer, proxy, cluster);
  if (grpc) {
    // gRPC honours max_requests only (gRFC A32).
    const auto& pool = policy.connection_pool;
    if (pool && pool->http && pool->http->http2_max_requests) {
      cluster.mutable_circuit_breakers()->add_thresholds()->mutable_max_requests()->set_value(
          *pool->http->http2_max_requests);
    }
    return;
  }
  ApplyCircuitBreakers(policy.connection_pool, cluster);
  if (policy.connection_pool && policy.connection_pool->tcp) {
    ApplyTcpSettings(*policy.connection_pool->tcp, cluster);
  }
  if (model::IsHttpLike(port.protocol)) {
    ApplyHttpProtocolOptions(policy.connection_pool, port, cluster);
  }
  if (policy.outlier_detection) ApplyOutlierDetection(*policy.outlier_detection, cluster);
  if (policy.tls) ApplyUpstreamTls(*policy.tls, cluster);
}

std::vector<envoy::config::route::v3::RouteAction::HashPolicy> HashPolicies(
    const ClusterTrafficPolicy& policy) {
  std::vector<envoy::config::route::v3::RouteAction::HashPolicy> out;
  if (!policy.load_balancer || !policy.load_balancer->consistent_hash) return out;
  const model::ConsistentHashLb& hash = *policy.load_balancer->consistent_hash;
  envoy::config::route::v3::RouteAction::HashPolicy& hash_policy = out.emplace_back();
  if (!hash.http_header_name.empty()) {
    hash_policy.mutable_header()->set_header_name(hash.http_header_name);
  } else if (hash.http_cookie) {
    auto* cookie = hash_policy.mutable_cookie();
    cookie->set_name(hash.http_cookie->name);
    cookie->set_path(hash.http_cookie->path);
    if (hash.http_cookie->ttl) SetDuration(*hash.http_cookie->ttl, *cookie->mutable_ttl());
  } else if (hash.use_source_ip) {
    hash_policy.mutable_connection_properties()->set_source_ip(true);
  } else if (!hash.http_query_parameter_name.empty()) {
    hash_policy.mutable_query_parameter()->set_name(hash.http_query_parameter_name);
  } else {
    out.clear();
  }
  return out;
}

}  // namespace meshpilot::translator
