#include <catch2/catch.hpp>

#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"
#include "tests/unit/translator/traffic_test_util.h"
#include "translator/traffic_policy.h"

namespace meshpilot::translator {
namespace {

using namespace traffic_testing;
using envoy::config::cluster::v3::Cluster;
using Simple = model::LoadBalancerSettings::Simple;

model::TrafficPolicy WithSimple(Simple simple) {
  model::TrafficPolicy policy;
  policy.load_balancer.emplace().simple = simple;
  return policy;
}

Cluster ClusterFor(const model::MeshState& state, const ProxyInfo& proxy,
                   const std::string& name = "outbound|9080||reviews.default.svc.cluster.local") {
  auto clusters = BuildClusters(state, proxy);
  const Cluster* cluster = FindByName(clusters, name);
  REQUIRE(cluster != nullptr);
  return *cluster;
}

TEST_CASE("simple load balancers, with gRPC staying on ROUND_ROBIN", "[traffic_policy]") {
  model::MeshState state = Mesh();
  model::DestinationRule& rule = AddDestinationRule(state, "default", "reviews", "reviews");
  CHECK(ClusterFor(state, Sidecar()).lb_policy() == Cluster::LEAST_REQUEST);  // Istio's default
  for (auto [simple, expected] : {std::pair{Simple::kRoundRobin, Cluster::ROUND_ROBIN},
                                  std::pair{Simple::kLeastConn, Cluster::LEAST_REQUEST},
                                  std::pair{Simple::kLeastRequest, Cluster::LEAST_REQUEST},
                                  std::pair{Simple::kRandom, Cluster::RANDOM}}) {
    rule.traffic_policy = WithSimple(simple);
    CHECK(ClusterFor(state, Sidecar()).lb_policy() == expected);
    CHECK(ClusterFor(state, Grpc()).lb_policy() == Cluster::ROUND_ROBIN);
  }
  rule.traffic_policy = WithSimple(Simple::kPassthrough);
  Cluster passthrough = ClusterFor(state, Sidecar());
  CHECK(passthrough.type() == Cluster::ORIGINAL_DST);
  CHECK(passthrough.lb_policy() == Cluster::CLUSTER_PROVIDED);
  CHECK_FALSE(passthrough.has_eds_cluster_config());
}

TEST_CASE("consistentHash: RING_HASH (gRPC too) or MAGLEV", "[traffic_policy]") {
  model::MeshState state = Mesh();
  model::DestinationRule& rule = AddDestinationRule(state, "default", "reviews", "reviews");
  auto& hash = rule.traffic_policy.emplace().load_balancer.emplace().consistent_hash.emplace();
  hash.use_source_ip = true;
  hash.ring_hash = model::ConsistentHashLb::RingHash{2048};
  Cluster ring = ClusterFor(state, Sidecar());
  CHECK(ring.lb_policy() == Cluster::RING_HASH);
  CHECK(ring.ring_hash_lb_config().minimum_ring_size().value() == 2048);
  CHECK(ClusterFor(state, Grpc()).lb_policy() == Cluster::RING_HASH);

  hash.ring_hash.reset();
  hash.maglev = model::ConsistentHashLb::Maglev{65537};
  Cluster maglev = ClusterFor(state, Sidecar());
  CHECK(maglev.lb_policy() == Cluster::MAGLEV);
  CHECK(maglev.maglev_lb_config().table_size().value() == 65537);
  CHECK(ClusterFor(state, Grpc()).lb_policy() == Cluster::RING_HASH);

  auto policies = HashPolicies(ResolveTrafficPolicy(&rule, nullptr, 9080));
  REQUIRE(policies.size() == 1);
  CHECK(policies[0].connection_properties().source_ip());
}

TEST_CASE("connectionPool: circuit breakers, timeouts, keepalive, HTTP options",
          "[traffic_policy]") {
  model::MeshState state = Mesh();
  model::DestinationRule& rule = AddDestinationRule(state, "default", "reviews", "reviews");
  CHECK(ClusterFor(state, Sidecar()).circuit_breakers().thresholds(0).max_requests().value() ==
        4294967295u);  // Istio's defaults: open
  auto& pool = rule.traffic_policy.emplace().connection_pool.emplace();
  pool.tcp = model::ConnectionPoolSettings::Tcp{
      .max_connections = 100,
      .connect_timeout = std::chrono::milliseconds(250),
      .tcp_keepalive = model::ConnectionPoolSettings::Tcp::Keepalive{
          3, std::chrono::seconds(7200), std::chrono::seconds(75)}};
  pool.http = model::ConnectionPoolSettings::Http{.http1_max_pending_requests = 10,
                                                  .http2_max_requests = 1000,
                                                  .max_requests_per_connection = 1,
                                                  .max_retries = 3,
                                                  .idle_timeout = std::chrono::seconds(30)};
  Cluster cluster = ClusterFor(state, Sidecar());
  const auto& thresholds = cluster.circuit_breakers().thresholds(0);
  CHECK(thresholds.max_connections().value() == 100);
  CHECK(thresholds.max_pending_requests().value() == 10);
  CHECK(thresholds.max_requests().value() == 1000);
  CHECK(thresholds.max_retries().value() == 3);
  CHECK(cluster.connect_timeout().nanos() == 250000000);
  const auto& keepalive = cluster.upstream_connection_options().tcp_keepalive();
  CHECK(keepalive.keepalive_probes().value() == 3);
  CHECK(keepalive.keepalive_time().value() == 7200);
  CHECK(keepalive.keepalive_interval().value() == 75);
  envoy::extensions::upstreams::http::v3::HttpProtocolOptions options;
  REQUIRE(cluster.typed_extension_protocol_options()
              .at("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
              .UnpackTo(&options));
  CHECK(options.common_http_protocol_options().idle_timeout().seconds() == 30);
  CHECK(options.common_http_protocol_options().max_requests_per_connection().value() == 1);
  CHECK(options.explicit_http_config().has_http_protocol_options());

  Cluster grpc = ClusterFor(state, Grpc());
  REQUIRE(grpc.circuit_breakers().thresholds_size() == 1);
  CHECK(grpc.circuit_breakers().thresholds(0).max_requests().value() == 1000);
  CHECK_FALSE(grpc.circuit_breakers().thresholds(0).has_max_connections());
  CHECK(grpc.typed_extension_protocol_options().empty());
}

TEST_CASE("gRPC and HTTP2 ports speak HTTP/2 upstream", "[traffic_policy]") {
  model::MeshState state = Mesh();
  Cluster cluster = ClusterFor(state, Sidecar(), "outbound|7070||ratings.shop.svc.cluster.local");
  envoy::extensions::upstreams::http::v3::HttpProtocolOptions options;
  REQUIRE(cluster.typed_extension_protocol_options()
              .at("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
              .UnpackTo(&options));
  CHECK(options.explicit_http_config().has_http2_protocol_options());
  CHECK(ClusterFor(state, Sidecar()).typed_extension_protocol_options().empty());
}

TEST_CASE("outlierDetection as Istio writes it", "[traffic_policy]") {
  model::MeshState state = Mesh();
  model::DestinationRule& rule = AddDestinationRule(state, "default", "reviews", "reviews");
  rule.traffic_policy.emplace().outlier_detection = model::OutlierDetection{
      .consecutive_gateway_errors = 0,
      .consecutive_5xx_errors = 7,
      .interval = std::chrono::seconds(5),
      .base_ejection_time = std::chrono::minutes(15),
      .max_ejection_percent = 100};
  Cluster cluster = ClusterFor(state, Sidecar());
  const auto& outlier = cluster.outlier_detection();
  CHECK(outlier.consecutive_5xx().value() == 7);
  CHECK(outlier.enforcing_consecutive_5xx().value() == 100);
  CHECK(outlier.consecutive_gateway_failure().value() == 0);
  CHECK(outlier.enforcing_consecutive_gateway_failure().value() == 0);
  CHECK(outlier.enforcing_success_rate().value() == 0);
  CHECK(outlier.interval().seconds() == 5);
  CHECK(outlier.base_ejection_time().seconds() == 900);
  CHECK(outlier.max_ejection_percent().value() == 100);
  CHECK(cluster.common_lb_config().has_healthy_panic_threshold());
  CHECK(cluster.common_lb_config().healthy_panic_threshold().value() == 0);
}

TEST_CASE("policy merge: subset over rule, port level replaces the whole level",
          "[traffic_policy]") {
  model::DestinationRule rule;
  rule.traffic_policy = WithSimple(Simple::kRandom);
  rule.traffic_policy->outlier_detection = model::OutlierDetection{.consecutive_5xx_errors = 5};
  model::PortTrafficPolicy port_level{.port = 9080};
  port_level.load_balancer.emplace().simple = Simple::kRoundRobin;
  rule.traffic_policy->port_level_settings.push_back(port_level);
  model::Subset subset{.name = "v1", .traffic_policy = WithSimple(Simple::kLeastRequest)};

  ClusterTrafficPolicy other_port = ResolveTrafficPolicy(&rule, nullptr, 8080);
  CHECK(other_port.load_balancer->simple == Simple::kRandom);
  CHECK(other_port.outlier_detection.has_value());
  ClusterTrafficPolicy on_port = ResolveTrafficPolicy(&rule, nullptr, 9080);
  CHECK(on_port.load_balancer->simple == Simple::kRoundRobin);
  CHECK_FALSE(on_port.outlier_detection.has_value());  // not inherited from the rule level
  ClusterTrafficPolicy in_subset = ResolveTrafficPolicy(&rule, &subset, 8080);
  CHECK(in_subset.load_balancer->simple == Simple::kLeastRequest);
  CHECK(in_subset.outlier_detection.has_value());  // the subset does not set it: the rule's
}

TEST_CASE("gRPC C-core before 30 (1.52) gets ROUND_ROBIN instead of a crashing RING_HASH",
          "[traffic_policy]") {
  model::MeshState state = Mesh();
  AddDestinationRule(state, "default", "reviews", "reviews")
      .traffic_policy.emplace()
      .load_balancer.emplace()
      .consistent_hash.emplace()
      .http_header_name = "x-user";
  ProxyInfo old_core = Grpc();
  old_core.user_agent_version = "C-core 29.0.0";
  ProxyInfo new_core = Grpc();
  new_core.user_agent_version = "C-core 30.1.0";
  CHECK(old_core.RingHashCrashes());
  CHECK_FALSE(new_core.RingHashCrashes());
  CHECK(ClusterFor(state, old_core).lb_policy() == Cluster::ROUND_ROBIN);
  CHECK(ClusterFor(state, new_core).lb_policy() == Cluster::RING_HASH);
  CHECK(old_core.TranslationKey() != new_core.TranslationKey());
  ProxyInfo go = Grpc();
  go.user_agent_version = "1.60.0";  // gRPC Go: not C-core
  CHECK_FALSE(go.RingHashCrashes());
}

TEST_CASE("TranslationKey separates proxies whose labels differ", "[proxy]") {
  CHECK(Proxy(false, "default", {{"app", "a"}}).TranslationKey() !=
        Proxy(false, "default", {{"app", "b"}}).TranslationKey());
  CHECK(Proxy(false, "default", {{"app", "a"}}).TranslationKey() ==
        Proxy(false, "default", {{"app", "a"}}).TranslationKey());
  CHECK(Sidecar().TranslationKey() != Grpc().TranslationKey());
}

}  // namespace
}  // namespace meshpilot::translator
