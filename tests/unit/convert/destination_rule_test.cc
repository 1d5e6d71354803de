#include <catch2/catch.hpp>

#include "tests/unit/convert/parse_test_util.h"

namespace meshpilot::convert {
namespace {

using std::chrono::milliseconds;
using testing::CheckErrors;
using testing::ErrorOf;
using testing::ParseAs;

TEST_CASE("A DestinationRule using every field parses", "[destination_rule]") {
  auto rule = ParseAs<model::DestinationRule>(R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: prod}
spec:
  host: reviews.prod.svc.cluster.local
  exportTo: ["."]
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: user, path: /, ttl: 0s}
        ringHash: {minimumRingSize: 1024}
      localityLbSetting:
        distribute:
        - from: us-west/zone1/*
          to: {"us-west/zone1/*": 80, "us-west/zone2/*": 20}
        enabled: true
      warmupDurationSecs: 30s
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
        tcpKeepalive: {probes: 3, time: 7200s, interval: 75s}
        idleTimeout: 0s
      http:
        http1MaxPendingRequests: 10
        http2MaxRequests: 1000
        maxRequestsPerConnection: 1
        maxRetries: 3
        idleTimeout: 1h
        h2UpgradePolicy: UPGRADE
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveGatewayErrors: 5
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 50
      minHealthPercent: 10
    tls: {mode: ISTIO_MUTUAL, sni: reviews}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: ROUND_ROBIN}
    proxyProtocol: {version: V2}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash:
          maglev: {tableSize: 65537}
          useSourceIp: true
  workloadSelector:
    matchLabels: {app: ratings}
)");
  CHECK(rule.meta.Key() == "prod/reviews");
  CHECK(rule.host == "reviews.prod.svc.cluster.local");
  REQUIRE(rule.traffic_policy.has_value());
  const model::TrafficPolicy& policy = *rule.traffic_policy;
  const model::ConsistentHashLb& hash = *policy.load_balancer->consistent_hash;
  CHECK(hash.http_cookie->name == "user");
  CHECK(hash.http_cookie->ttl == milliseconds(0));
  CHECK(hash.ring_hash->minimum_ring_size == 1024);
  const auto& locality = *policy.load_balancer->locality_lb_setting;
  CHECK(locality.distribute.at(0).to.at("us-west/zone1/*") == 80);
  CHECK(locality.enabled == true);
  CHECK(policy.load_balancer->warmup_duration == milliseconds(30'000));
  CHECK(policy.connection_pool->tcp->max_connections == 100);
  CHECK(policy.connection_pool->tcp->connect_timeout == milliseconds(30));
  CHECK(policy.connection_pool->tcp->tcp_keepalive->probes == 3u);
  CHECK(policy.connection_pool->tcp->idle_timeout == milliseconds(0));
  CHECK(policy.connection_pool->http->http2_max_requests == 1000);
  CHECK(policy.connection_pool->http->h2_upgrade_policy ==
        model::ConnectionPoolSettings::Http::H2UpgradePolicy::kUpgrade);
  CHECK(policy.outlier_detection->consecutive_5xx_errors == 7u);
  CHECK(policy.outlier_detection->base_ejection_time == milliseconds(15 * 60'000));
  CHECK(policy.outlier_detection->max_ejection_percent == 50);
  CHECK(policy.tls->mode == model::ClientTlsSettings::Mode::kIstioMutual);
  CHECK(policy.port_level_settings.at(0).port == 9080);
  CHECK(policy.port_level_settings.at(0).load_balancer->simple ==
        model::LoadBalancerSettings::Simple::kRoundRobin);
  CHECK(policy.proxy_protocol->version == model::ProxyProtocol::Version::kV2);
  REQUIRE(rule.subsets.size() == 2);
  CHECK(rule.subsets[0].labels.at("version") == "v1");
  const auto& v2_hash = *rule.subsets[1].traffic_policy->load_balancer->consistent_hash;
  CHECK(v2_hash.use_source_ip);
  CHECK(v2_hash.maglev->table_size == 65537);
  CHECK(rule.workload_selector->at("app") == "ratings");
}

TEST_CASE("DestinationRule problems are reported with their paths", "[destination_rule]") {
  std::string error = ErrorOf(R"(
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: r}
spec:
  trafficPolicy:
    loadBalancer:
      simple: FASTEST
      consistentHash: {httpHeaderName: x, useSourceIp: true, maglev: {tableSize: 1000}}
    connectionPool: {tcp: {connectTimeout: 5}}
    outlierDetection: {interval: 1us, maxEjectionPercent: 101}
    tls: {mode: MUTUAL}
    portLevelSettings:
    - loadBalancer: {simple: RANDOM}
  subsets:
  - name: V1
  - name: v2
  - name: v2
)");
  CheckErrors(error, {
      "spec.host: required",
      "spec.trafficPolicy.loadBalancer.simple: must be one of",
      "spec.trafficPolicy.loadBalancer.consistentHash: only one of",
      "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: must be a prime",
      "spec.trafficPolicy.connectionPool.tcp.connectTimeout: invalid duration",
      "spec.trafficPolicy.outlierDetection.interval: duration \"1us\" must be at least 1ms",
      "spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be between 0 and 100",
      "spec.trafficPolicy.tls.clientCertificate: required for MUTUAL mode",
      "spec.trafficPolicy.portLevelSettings[0].port: required",
      "spec.subsets[0].name: \"V1\" is not a DNS-1123 label",
      "spec.subsets[2].name: duplicate subset name",
  });
}

}  // namespace
}  // namespace meshpilot::convert
