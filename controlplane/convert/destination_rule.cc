#include "controlplane/convert/destination_rule.h"

#include <cmath>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "controlplane/convert/validation.h"

namespace meshpilot::convert {
namespace {

using std::chrono::milliseconds;

constexpr int64_t kMaxInt32 = INT32_MAX;
constexpr int64_t kMaxUint32 = UINT32_MAX;

// Envoy's own primality test, so that meshpilot accepts exactly the maglev tables Envoy does.
bool IsPrime(uint64_t x) {
  if (x != 0 && x < 4) return true;
  if ((x & 1) == 0) return false;
  uint64_t limit = static_cast<uint64_t>(std::sqrt(static_cast<double>(x)));
  for (uint64_t factor = 3; factor <= limit; factor += 2) {
    if (x % factor == 0) return false;
  }
  return true;
}

model::ConsistentHashLb ReadConsistentHash(MapReader& reader) {
  model::ConsistentHashLb hash;
  int keys = 0;
  if (std::optional<std::string> header = reader.String("httpHeaderName")) {
    hash.http_header_name = *header;
    ++keys;
  }
  if (std::optional<MapReader> cookie = reader.Map("httpCookie")) {
    // A zero ttl asks for a session cookie.
    hash.http_cookie = {cookie->RequiredString("name"), cookie->String("path").value_or(""),
                        cookie->Duration("ttl", /*allow_zero=*/true)};
    ++keys;
  }
  if (std::optional<bool> source_ip = reader.Bool("useSourceIp")) {
    hash.use_source_ip = *source_ip;
    ++keys;
  }
  if (std::optional<std::string> parameter = reader.String("httpQueryParameterName")) {
    hash.http_query_parameter_name = *parameter;
    ++keys;
  }
  if (keys > 1) {
    reader.Error(
        "only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName may be set");
  }

  if (std::optional<MapReader> ring = reader.Map("ringHash")) {
    int64_t size = ring->Int("minimumRingSize", 0, INT64_MAX).value_or(0);
    hash.ring_hash = {static_cast<uint64_t>(size)};
  }
  if (std::optional<MapReader> maglev = reader.Map("maglev")) {
    std::optional<int64_t> size = maglev->Int("tableSize", 0, INT64_MAX);
    if (!size || *size == 0) {
      if (!maglev->Has("tableSize")) maglev->FieldError("tableSize", "required");
    } else if (*size >= 5000011) {
      maglev->FieldError("tableSize", "must be less than 5000011");
    } else if (!IsPrime(*size)) {
      maglev->FieldError("tableSize", "must be a prime number");
    }
    hash.maglev = {static_cast<uint64_t>(size.value_or(0))};
  }
  if (hash.ring_hash && hash.maglev) reader.Error("only one of ringHash or maglev may be set");
  if (std::optional<int64_t> legacy = reader.Int("minimumRingSize", 0, INT64_MAX);
      legacy && *legacy > 0) {
    if (hash.ring_hash || hash.maglev) {
      reader.FieldError("minimumRingSize", "must not be set with ringHash or maglev");
    } else {
      hash.ring_hash = {static_cast<uint64_t>(*legacy)};
    }
  }
  return hash;
}

model::LocalityLbSetting ReadLocalityLb(MapReader& reader) {
  model::LocalityLbSetting setting;
  for (MapReader& item : reader.Items("distribute")) {
    model::LocalityLbSetting::Distribute& distribute = setting.distribute.emplace_back();
    distribute.from = item.RequiredString("from");
    uint32_t total = 0;
    for (const auto& [locality, text] : item.StringMap("to")) {
      uint32_t weight = 0;
      if (!absl::SimpleAtoi(text, &weight) || weight < 1 || weight > 100) {
        item.FieldError(absl::StrCat("to[", locality, "]"), "weight must be between 1 and 100");
      }
      distribute.to[locality] = weight;
      total += weight;
    }
    if (total != 100) item.FieldError("to", absl::StrCat("total weight is ", total, ", not 100"));
  }
  for (MapReader& item : reader.Items("failover")) {
    model::LocalityLbSetting::Failover failover{item.RequiredString("from"),
                                                item.RequiredString("to")};
    if (failover.from == failover.to) item.Error("from and to must be different regions");
    if (absl::StrContains(failover.from, '/') || absl::StrContains(failover.to, '/')) {
      item.Error("failover names regions only, without zones");
    }
    if (absl::StrContains(failover.from, '*') || absl::StrContains(failover.to, '*')) {
      item.Error("failover regions must not hold the wildcard *");
    }
    setting.failover.push_back(std::move(failover));
  }
  setting.failover_priority = reader.StringList("failoverPriority");
  setting.enabled = reader.Bool("enabled");
  if (!setting.distribute.empty() && !setting.failover.empty()) {
    reader.Error("distribute and failover cannot both be set");
  }
  return setting;
}

model::LoadBalancerSettings ReadLoadBalancer(MapReader& reader) {
  using Simple = model::LoadBalancerSettings::Simple;
  model::LoadBalancerSettings lb;
  lb.simple = reader.Enumerator<Simple>(
      "simple", {{"UNSPECIFIED", Simple::kUnspecified}, {"LEAST_CONN", Simple::kLeastConn},
                 {"RANDOM", Simple::kRandom}, {"PASSTHROUGH", Simple::kPassthrough},
                 {"ROUND_ROBIN", Simple::kRoundRobin}, {"LEAST_REQUEST", Simple::kLeastRequest}});
  if (std::optional<MapReader> hash = reader.Map("consistentHash")) {
    lb.consistent_hash = ReadConsistentHash(*hash);
    if (reader.Has("simple")) reader.Error("only one of simple or consistentHash may be set");
  }
  if (std::optional<MapReader> locality = reader.Map("localityLbSetting")) {
    lb.locality_lb_setting = ReadLocalityLb(*locality);
  }
  lb.warmup_duration = reader.Duration("warmupDurationSecs");
  if (std::optional<MapReader> warmup = reader.Map("warmup")) {
    model::WarmupConfiguration& out = lb.warmup.emplace();
    if (!warmup->Has("duration")) warmup->FieldError("duration", "required");
    out.duration = warmup->Duration("duration").value_or(milliseconds(0));
    out.minimum_percent = warmup->Double("minimumPercent");
    if (out.minimum_percent && (*out.minimum_percent < 0 || *out.minimum_percent > 100)) {
      warmup->FieldError("minimumPercent", "must be between 0 and 100");
    }
    out.aggression = warmup->Double("aggression");
    if (out.aggression && *out.aggression < 1) warmup->FieldError("aggression", "must be >= 1");
  }
  return lb;
}

model::ConnectionPoolSettings ReadConnectionPool(MapReader& reader) {
  model::ConnectionPoolSettings pool;
  if (std::optional<MapReader> tcp = reader.Map("tcp")) {
    model::ConnectionPoolSettings::Tcp& out = pool.tcp.emplace();
    out.max_connections = tcp->Int("maxConnections", 0, kMaxInt32);
    out.connect_timeout = tcp->Duration("connectTimeout");
    if (std::optional<MapReader> keepalive = tcp->Map("tcpKeepalive")) {
      out.tcp_keepalive = {keepalive->Int("probes", 0, kMaxUint32), keepalive->Duration("time"),
                           keepalive->Duration("interval")};
    }
    out.max_connection_duration = tcp->Duration("maxConnectionDuration");
    out.idle_timeout = tcp->Duration("idleTimeout", /*allow_zero=*/true);
  }
  if (std::optional<MapReader> http = reader.Map("http")) {
    using Upgrade = model::ConnectionPoolSettings::Http::H2UpgradePolicy;
    model::ConnectionPoolSettings::Http& out = pool.http.emplace();
    out.http1_max_pending_requests = http->Int("http1MaxPendingRequests", 0, kMaxInt32);
    out.http2_max_requests = http->Int("http2MaxRequests", 0, kMaxInt32);
    out.max_requests_per_connection = http->Int("maxRequestsPerConnection", 0, kMaxInt32);
    out.max_retries = http->Int("maxRetries", 0, kMaxInt32);
    out.idle_timeout = http->Duration("idleTimeout");
    out.h2_upgrade_policy =
        http->Enumerator<Upgrade>("h2UpgradePolicy", {{"DEFAULT", Upgrade::kDefault},
                                                      {"DO_NOT_UPGRADE", Upgrade::kDoNotUpgrade},
                                                      {"UPGRADE", Upgrade::kUpgrade}})
            .value_or(Upgrade::kDefault);
    out.use_client_protocol = http->Bool("useClientProtocol").value_or(false);
    if (out.use_client_protocol && out.h2_upgrade_policy == Upgrade::kUpgrade) {
      http->FieldError("useClientProtocol", "must not be true when h2UpgradePolicy is UPGRADE");
    }
    out.max_concurrent_streams = http->Int("maxConcurrentStreams", 0, kMaxInt32);
  }
  if (!pool.tcp && !pool.http) reader.Error("must set tcp, http or both");
  return pool;
}

model::OutlierDetection ReadOutlierDetection(MapReader& reader) {
  model::OutlierDetection outlier;
  outlier.split_external_local_origin_errors =
      reader.Bool("splitExternalLocalOriginErrors").value_or(false);
  outlier.consecutive_local_origin_failures =
      reader.Int("consecutiveLocalOriginFailures", 0, kMaxUint32);
  if (outlier.consecutive_local_origin_failures.value_or(0) > 0 &&
      !outlier.split_external_local_origin_errors) {
    reader.FieldError("consecutiveLocalOriginFailures",
                      "requires splitExternalLocalOriginErrors to be true");
  }
  outlier.consecutive_gateway_errors = reader.Int("consecutiveGatewayErrors", 0, kMaxUint32);
  outlier.consecutive_5xx_errors = reader.Int("consecutive5xxErrors", 0, kMaxUint32);
  // Deprecated predecessor of consecutive5xxErrors.
  if (std::optional<int64_t> legacy = reader.Int("consecutiveErrors", 0, kMaxInt32)) {
    if (!outlier.consecutive_5xx_errors) outlier.consecutive_5xx_errors = *legacy;
  }
  outlier.interval = reader.Duration("interval");
  outlier.base_ejection_time = reader.Duration("baseEjectionTime");
  outlier.max_ejection_percent = reader.Int("maxEjectionPercent", 0, 100);
  outlier.min_health_percent = reader.Int("minHealthPercent", 0, 100);
  return outlier;
}

model::ClientTlsSettings ReadClientTls(MapReader& reader) {
  using Mode = model::ClientTlsSettings::Mode;
  model::ClientTlsSettings tls;
  tls.mode = reader
                 .Enumerator<Mode>("mode", {{"DISABLE", Mode::kDisable},
                                            {"SIMPLE", Mode::kSimple},
                                            {"MUTUAL", Mode::kMutual},
                                            {"ISTIO_MUTUAL", Mode::kIstioMutual}})
                 .value_or(Mode::kDisable);
  tls.client_certificate = reader.String("clientCertificate").value_or("");
  tls.private_key = reader.String("privateKey").value_or("");
  tls.ca_certificates = reader.String("caCertificates").value_or("");
  tls.credential_name = reader.String("credentialName").value_or("");
  tls.subject_alt_names = reader.StringList("subjectAltNames");
  tls.sni = reader.String("sni").value_or("");
  tls.insecure_skip_verify = reader.Bool("insecureSkipVerify");
  tls.ca_crl = reader.String("caCrl").value_or("");

  bool simple_or_mutual = tls.mode == Mode::kSimple || tls.mode == Mode::kMutual;
  if (tls.insecure_skip_verify.value_or(false) && simple_or_mutual &&
      (!tls.ca_certificates.empty() || !tls.subject_alt_names.empty() ||
       (tls.mode == Mode::kSimple && !tls.credential_name.empty()))) {
    reader.FieldError("insecureSkipVerify",
                      "cannot be true with caCertificates, credentialName or subjectAltNames");
  }
  if (simple_or_mutual && !tls.credential_name.empty()) {
    // The credential supplies the certificates; inline ones would be ambiguous.
    if (!tls.client_certificate.empty() || !tls.private_key.empty() ||
        !tls.ca_certificates.empty() || !tls.ca_crl.empty()) {
      reader.FieldError("credentialName", "cannot be set with clientCertificate, privateKey, "
                                          "caCertificates or caCrl");
    }
  } else if (tls.mode == Mode::kMutual) {
    if (tls.client_certificate.empty()) {
      reader.FieldError("clientCertificate", "required for MUTUAL mode");
    }
    if (tls.private_key.empty()) reader.FieldError("privateKey", "required for MUTUAL mode");
  }
  return tls;
}

// The fields TrafficPolicy and PortTrafficPolicy share; false when none is set.
template <typename Policy>
bool ReadCommonPolicy(MapReader& reader, Policy& policy) {
  if (std::optional<MapReader> lb = reader.Map("loadBalancer")) {
    policy.load_balancer = ReadLoadBalancer(*lb);
  }
  if (std::optional<MapReader> pool = reader.Map("connectionPool")) {
    policy.connection_pool = ReadConnectionPool(*pool);
  }
  if (std::optional<MapReader> outlier = reader.Map("outlierDetection")) {
    policy.outlier_detection = ReadOutlierDetection(*outlier);
  }
  if (std::optional<MapReader> tls = reader.Map("tls")) policy.tls = ReadClientTls(*tls);
  return policy.load_balancer || policy.connection_pool || policy.outlier_detection || policy.tls;
}

model::TrafficPolicy ReadTrafficPolicy(MapReader& reader) {
  model::TrafficPolicy policy;
  bool any = ReadCommonPolicy(reader, policy);
  for (MapReader& item : reader.Items("portLevelSettings")) {
    model::PortTrafficPolicy& port_policy = policy.port_level_settings.emplace_back();
    if (std::optional<MapReader> port = item.Map("port")) {
      port_policy.port = port->RequiredPort("number").value_or(0);
    } else {
      item.FieldError("port", "required");
    }
    if (!ReadCommonPolicy(item, port_policy)) {
      item.Error("must set loadBalancer, connectionPool, outlierDetection or tls");
    }
    any = true;
  }
  if (std::optional<MapReader> tunnel = reader.Map("tunnel")) {
    model::TunnelSettings& out = policy.tunnel.emplace();
    out.protocol = tunnel->String("protocol").value_or("CONNECT");
    if (out.protocol != "CONNECT" && out.protocol != "POST") {
      tunnel->FieldError("protocol", "must be CONNECT or POST");
    }
    out.target_host = tunnel->RequiredString("targetHost");
    if (!out.target_host.empty() && !ValidateIp(out.target_host, false).ok()) {
      tunnel->CheckField("targetHost", ValidateWildcardDomain(out.target_host));
    }
    out.target_port = tunnel->RequiredPort("targetPort").value_or(0);
    any = true;
  }
  if (std::optional<MapReader> proxy_protocol = reader.Map("proxyProtocol")) {
    using Version = model::ProxyProtocol::Version;
    policy.proxy_protocol = {
        proxy_protocol->Enumerator<Version>("version", {{"V1", Version::kV1}, {"V2", Version::kV2}})
            .value_or(Version::kV1)};
    if (policy.tunnel) reader.Error("tunnel and proxyProtocol cannot both be set");
    any = true;
  }
  if (!any) reader.Error("a traffic policy must set at least one field");
  return policy;
}

}  // namespace

model::DestinationRule ReadDestinationRule(MapReader& object, model::ObjectMeta meta) {
  model::DestinationRule rule;
  rule.meta = std::move(meta);
  MapReader spec = object.Child("spec", /*strict=*/true);
  rule.host = spec.RequiredString("host");
  if (!rule.host.empty()) spec.CheckField("host", ValidateWildcardDomain(rule.host));
  if (std::optional<MapReader> policy = spec.Map("trafficPolicy")) {
    rule.traffic_policy = ReadTrafficPolicy(*policy);
  }
  absl::flat_hash_set<std::string> names;
  for (MapReader& item : spec.Items("subsets")) {
    model::Subset& subset = rule.subsets.emplace_back();
    subset.name = item.RequiredString("name");
    if (!subset.name.empty()) {
      item.CheckField("name", ValidateDnsLabel(subset.name));
      if (!names.insert(subset.name).second) item.FieldError("name", "duplicate subset name");
    }
    subset.labels = item.StringMap("labels");
    if (std::optional<MapReader> policy = item.Map("trafficPolicy")) {
      subset.traffic_policy = ReadTrafficPolicy(*policy);
    }
  }
  rule.export_to = ReadExportTo(spec, rule.meta.namespace_);
  if (std::optional<MapReader> selector = spec.Map("workloadSelector")) {
    rule.workload_selector = ReadSelectorLabels(*selector, "matchLabels");
    // A rule scoped to workloads of its namespace cannot be seen from other namespaces.
    for (const std::string& entry : rule.export_to) {
      if (entry != "." && entry != rule.meta.namespace_) {
        spec.FieldError("exportTo", "with workloadSelector, only the own namespace is allowed");
        break;
      }
    }
  }
  return rule;
}

}  // namespace meshpilot::convert
