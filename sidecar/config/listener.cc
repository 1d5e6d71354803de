#include "sidecar/config/listener.h"

#include <algorithm>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "absl/algorithm/container.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "sidecar/config/tls.h"
#include "envoy/extensions/filters/http/cors/v3/cors.pb.h"
#include "envoy/extensions/filters/http/fault/v3/fault.pb.h"
#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "sidecar/config/duration.h"
#include "xds/type/v3/typed_struct.pb.h"

namespace meshpilot::sidecar::config {
namespace {

namespace listener_v3 = envoy::config::listener::v3;
namespace hcm_v3 = envoy::extensions::filters::network::http_connection_manager::v3;
namespace tcp_v3 = envoy::extensions::filters::network::tcp_proxy::v3;


std::string TypeOf(const google::protobuf::Any& any) {
  const std::string& url = any.type_url();
  size_t slash = url.rfind('/');
  return slash == std::string::npos ? url : url.substr(slash + 1);
}

constexpr std::string_view kHttpRbacType = "envoy.extensions.filters.http.rbac.v3.RBAC";
constexpr std::string_view kNetworkRbacType = "envoy.extensions.filters.network.rbac.v3.RBAC";
constexpr std::string_view kPeerMetadataType = "io.istio.http.peer_metadata.Config";

// A TypedStruct's type and fields (xds.type.v3 or its older udpa.type.v1 twin, the same on
// the wire); nullopt for any other type.
std::optional<xds::type::v3::TypedStruct> TypedStructOf(const google::protobuf::Any& any) {
  const std::string type = TypeOf(any);
  xds::type::v3::TypedStruct typed;
  if ((type != "xds.type.v3.TypedStruct" && type != "udpa.type.v1.TypedStruct") ||
      !typed.ParseFromString(any.value())) {
    return std::nullopt;
  }
  return typed;
}

// Which of Istio's peer metadata methods name istio_headers (workload_discovery, which needs
// Istio's workload xDS, is not done).
HttpChain::PeerExchange PeerExchangeOf(const google::protobuf::Struct& config) {
  auto has_istio_headers = [&config](const std::string& list) {
    auto it = config.fields().find(list);
    if (it == config.fields().end()) return false;
    for (const auto& method : it->second.list_value().values()) {
      if (method.struct_value().fields().contains("istio_headers")) return true;
    }
    return false;
  };
  return {has_istio_headers("downstream_discovery"), has_istio_headers("downstream_propagation"),
          has_istio_headers("upstream_discovery"), has_istio_headers("upstream_propagation")};
}

// Checks the HTTP filter list and keeps the RBAC filters in `http`.
absl::Status ParseHttpFilters(const hcm_v3::HttpConnectionManager& hcm, const std::string& field,
                              HttpChain& http) {
  if (hcm.http_filters_size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".http_filters: must end in the router"));
  }
  for (int i = 0; i < hcm.http_filters_size(); ++i) {
    const auto& filter = hcm.http_filters(i);
    const std::string ff = absl::StrCat(field, ".http_filters[", i, "]");
    const std::string type = TypeOf(filter.typed_config());
    const bool last = i == hcm.http_filters_size() - 1;
    if (type == envoy::extensions::filters::http::router::v3::Router::descriptor()->full_name()) {
      if (!last) return absl::InvalidArgumentError(absl::StrCat(ff, ": the router must be last"));
      continue;
    }
    if (last) {
      return absl::InvalidArgumentError(absl::StrCat(
          ff, ": the last HTTP filter must be envoy.filters.http.router, not \"", filter.name(),
          "\""));
    }
    if (type == kHttpRbacType) {
      auto rbac = filters::RbacFilter::ParseHttp(filter.typed_config(),
                                                 absl::StrCat(ff, ".typed_config"));
      if (!rbac.ok()) return rbac.status();
      http.rbac.push_back(*std::move(rbac));
      continue;
    }
    if (type == envoy::extensions::filters::http::cors::v3::Cors::descriptor()->full_name()) {
      continue;  // the CORS policies are on the routes; meshproxy does not enforce them yet.
    }
    if (type == envoy::extensions::filters::http::fault::v3::HTTPFault::descriptor()->full_name()) {
      envoy::extensions::filters::http::fault::v3::HTTPFault fault;
      if (!filter.typed_config().UnpackTo(&fault)) {
        return absl::InvalidArgumentError(absl::StrCat(ff, ".typed_config: cannot unpack"));
      }
      if (fault.has_abort() || fault.has_delay()) {
        return absl::InvalidArgumentError(
            absl::StrCat(ff, ".typed_config: listener-level fault injection is not supported yet"));
      }
      continue;  // empty: the routes' typed_per_filter_config faults apply.
    }
    if (auto typed = TypedStructOf(filter.typed_config());
        typed && typed->type_url().substr(typed->type_url().rfind('/') + 1) == kPeerMetadataType) {
      http.peer_exchange = PeerExchangeOf(typed->value());
      continue;
    }
    if (filter.is_optional()) continue;
    return absl::InvalidArgumentError(absl::StrCat(ff, ": unsupported HTTP filter \"", filter.name(),
                                                   "\" (", type, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Cidr>> ParseCidrs(
    const google::protobuf::RepeatedPtrField<envoy::config::core::v3::CidrRange>& ranges,
    const std::string& field) {
  std::vector<Cidr> out;
  for (int i = 0; i < ranges.size(); ++i) {
    auto cidr = ParseCidr(ranges[i], absl::StrCat(field, "[", i, "]"));
    if (!cidr.ok()) return cidr.status();
    out.push_back(*cidr);
  }
  return out;
}

absl::StatusOr<FilterChainMatch> ParseMatch(const listener_v3::FilterChainMatch& proto,
                                            const std::string& field) {
  FilterChainMatch match;
  if (proto.has_destination_port()) {
    if (proto.destination_port().value() > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".destination_port: must be <= 65535"));
    }
    match.destination_port = proto.destination_port().value();
  }
  auto prefix_ranges = ParseCidrs(proto.prefix_ranges(), absl::StrCat(field, ".prefix_ranges"));
  if (!prefix_ranges.ok()) return prefix_ranges.status();
  match.prefix_ranges = *std::move(prefix_ranges);
  for (int i = 0; i < proto.server_names_size(); ++i) {
    std::string name = absl::AsciiStrToLower(proto.server_names(i));
    const size_t star = name.find('*');
    if (name.empty() || (star != std::string::npos &&
                         (star != 0 || name.size() < 3 || name[1] != '.' ||
                          name.find('*', 1) != std::string::npos))) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".server_names[", i, "]: \"", proto.server_names(i),
          "\" is not a server name (wildcards only as a \"*.\" prefix)"));
    }
    match.server_names.push_back(std::move(name));
  }
  match.transport_protocol = proto.transport_protocol();
  match.application_protocols.assign(proto.application_protocols().begin(),
                                     proto.application_protocols().end());
  auto direct = ParseCidrs(proto.direct_source_prefix_ranges(),
                           absl::StrCat(field, ".direct_source_prefix_ranges"));
  if (!direct.ok()) return direct.status();
  match.direct_source_prefix_ranges = *std::move(direct);
  switch (proto.source_type()) {
    case listener_v3::FilterChainMatch::SAME_IP_OR_LOOPBACK:
      match.source_type = FilterChainMatch::SourceType::kSameIpOrLoopback;
      break;
    case listener_v3::FilterChainMatch::EXTERNAL:
      match.source_type = FilterChainMatch::SourceType::kExternal;
      break;
    default:
      break;
  }
  auto source = ParseCidrs(proto.source_prefix_ranges(),
                           absl::StrCat(field, ".source_prefix_ranges"));
  if (!source.ok()) return source.status();
  match.source_prefix_ranges = *std::move(source);
  for (int i = 0; i < proto.source_ports_size(); ++i) {
    if (proto.source_ports(i) > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".source_ports[", i, "]: must be <= 65535"));
    }
    match.source_ports.push_back(proto.source_ports(i));
  }
  return match;
}

// The connection manager's limits on a downstream connection and its streams.
absl::Status ParseConnectionLimits(const hcm_v3::HttpConnectionManager& hcm,
                                   const std::string& field, HttpChain& http) {
  const auto& options = hcm.common_http_protocol_options();
  const std::string of = absl::StrCat(field, ".common_http_protocol_options");
  auto duration = [&](const google::protobuf::Duration& d, const char* name,
                      const std::string& parent, auto& out) -> absl::Status {
    if (auto s = CheckDuration(d, absl::StrCat(parent, ".", name)); !s.ok()) return s;
    out = ToMillis(d);
    return absl::OkStatus();
  };
  absl::Status status;
  if (options.has_idle_timeout()) {
    status.Update(duration(options.idle_timeout(), "idle_timeout", of, http.idle_timeout));
  }
  if (options.has_max_connection_duration()) {
    status.Update(duration(options.max_connection_duration(), "max_connection_duration", of,
                           http.max_connection_duration));
  }
  if (options.has_max_stream_duration()) {
    status.Update(duration(options.max_stream_duration(), "max_stream_duration", of,
                           http.max_stream_duration));
  }
  if (options.has_max_requests_per_connection()) {
    http.max_requests_per_connection = options.max_requests_per_connection().value();
  }
  if (options.has_max_headers_count()) {
    status.Update(absl::InvalidArgumentError(
        absl::StrCat(of, ".max_headers_count: not supported")));
  }
  if (options.headers_with_underscores_action() !=
      envoy::config::core::v3::HttpProtocolOptions::ALLOW) {
    status.Update(absl::InvalidArgumentError(
        absl::StrCat(of, ".headers_with_underscores_action: only ALLOW is supported")));
  }
  if (hcm.has_drain_timeout()) {
    status.Update(duration(hcm.drain_timeout(), "drain_timeout", field, http.drain_timeout));
  }
  return status;
}

// A hash of `message`'s bytes, serialized deterministically (its Structs' maps in order).
uint64_t Fingerprint(const google::protobuf::Message& message) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return absl::HashOf(bytes);
}

absl::StatusOr<FilterChain> ParseChain(const listener_v3::FilterChain& proto,
                                       const std::string& field) {
  FilterChain chain;
  chain.name = proto.name();
  if (proto.has_filter_chain_match()) {
    auto match = ParseMatch(proto.filter_chain_match(), absl::StrCat(field, ".filter_chain_match"));
    if (!match.ok()) return match.status();
    chain.match = *std::move(match);
  }
  if (proto.has_transport_socket()) {
    auto tls = ParseDownstreamTransportSocket(proto.transport_socket(),
                                              absl::StrCat(field, ".transport_socket"));
    if (!tls.ok()) return tls.status();
    chain.tls = *std::move(tls);
  }
  if (proto.filters_size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".filters: empty"));
  }
  // The last filter carries traffic; only RBAC may come before it.
  const int last = proto.filters_size() - 1;
  for (int i = 0; i < last; ++i) {
    const auto& filter = proto.filters(i);
    const std::string ff = absl::StrCat(field, ".filters[", i, "]");
    if (TypeOf(filter.typed_config()) != kNetworkRbacType) {
      return absl::InvalidArgumentError(absl::StrCat(
          ff, ": unsupported network filter \"", filter.name(),
          "\" before the terminal filter (only envoy.filters.network.rbac)"));
    }
    auto rbac = filters::RbacFilter::ParseNetwork(filter.typed_config(),
                                                  absl::StrCat(ff, ".typed_config"));
    if (!rbac.ok()) return rbac.status();
    chain.rbac.push_back(*std::move(rbac));
  }
  const auto& filter = proto.filters(last);
  const std::string ff = absl::StrCat(field, ".filters[", last, "]");
  const std::string type = TypeOf(filter.typed_config());
  if (type == hcm_v3::HttpConnectionManager::descriptor()->full_name()) {
    hcm_v3::HttpConnectionManager hcm;
    if (!filter.typed_config().UnpackTo(&hcm)) {
      return absl::InvalidArgumentError(absl::StrCat(ff, ".typed_config: cannot unpack"));
    }
    const std::string hf = absl::StrCat(ff, ".typed_config");
    HttpChain http;
    switch (hcm.codec_type()) {
      case hcm_v3::HttpConnectionManager::HTTP1:
        http.codec = HttpChain::Codec::kHttp1;
        break;
      case hcm_v3::HttpConnectionManager::HTTP2:
        http.codec = HttpChain::Codec::kHttp2;
        break;
      case hcm_v3::HttpConnectionManager::AUTO:
        http.codec = HttpChain::Codec::kAuto;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat(hf, ".codec_type: HTTP/3 is not supported (AUTO, HTTP1, HTTP2 are)"));
    }
    http.stat_prefix = hcm.stat_prefix();
    http.enable_trailers = hcm.http_protocol_options().enable_trailers();
    for (int u = 0; u < hcm.upgrade_configs_size(); ++u) {
      const auto& proto = hcm.upgrade_configs(u);
      const std::string uf = absl::StrCat(hf, ".upgrade_configs[", u, "]");
      auto upgrade = ParseUpgradeConfig(proto, uf);
      if (!upgrade.ok()) return upgrade.status();
      if (proto.filters_size() > 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(uf, ".filters: unsupported (upgrades take the chain's filters)"));
      }
      if (!http.upgrades.insert(*std::move(upgrade)).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(uf, ".upgrade_type: \"", proto.upgrade_type(), "\" given twice"));
      }
    }
    if (auto status = ParseConnectionLimits(hcm, hf, http); !status.ok()) return status;
    switch (hcm.route_specifier_case()) {
      case hcm_v3::HttpConnectionManager::kRds:
        if (!hcm.rds().config_source().has_ads()) {
          return absl::InvalidArgumentError(
              absl::StrCat(hf, ".rds.config_source: only ads is supported"));
        }
        http.rds_name = hcm.rds().route_config_name();
        if (hcm.rds().config_source().has_initial_fetch_timeout()) {
          http.rds_initial_fetch_timeout = ToMillis(hcm.rds().config_source().initial_fetch_timeout());
        }
        if (http.rds_name.empty()) {
          return absl::InvalidArgumentError(absl::StrCat(hf, ".rds.route_config_name: empty"));
        }
        break;
      case hcm_v3::HttpConnectionManager::kRouteConfig: {
        auto routes = ParseRouteConfiguration(hcm.route_config());
        if (!routes.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(hf, ".route_config.", routes.status().message()));
        }
        http.inline_routes = *std::move(routes);
        break;
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat(hf, ": needs rds or route_config"));
    }
    if (auto status = ParseHttpFilters(hcm, hf, http); !status.ok()) return status;
    chain.filter = std::move(http);
    return chain;
  }
  if (type == tcp_v3::TcpProxy::descriptor()->full_name()) {
    tcp_v3::TcpProxy proto_tcp;
    if (!filter.typed_config().UnpackTo(&proto_tcp)) {
      return absl::InvalidArgumentError(absl::StrCat(ff, ".typed_config: cannot unpack"));
    }
    const std::string tf = absl::StrCat(ff, ".typed_config");
    TcpProxyChain tcp;
    tcp.stat_prefix = proto_tcp.stat_prefix();
    if (proto_tcp.has_idle_timeout()) {
      const auto& d = proto_tcp.idle_timeout();
      if (d.seconds() < 0 || d.nanos() < 0) {
        return absl::InvalidArgumentError(absl::StrCat(tf, ".idle_timeout: must be >= 0"));
      }
      tcp.idle_timeout = ToMillis(d);
    }
    for (int i = 0; i < proto_tcp.hash_policy_size(); ++i) {
      if (!proto_tcp.hash_policy(i).has_source_ip()) {
        return absl::InvalidArgumentError(absl::StrCat(
            tf, ".hash_policy[", i, "]: only source_ip is supported"));
      }
      tcp.hash_source_ip = true;
    }
    if (proto_tcp.has_weighted_clusters()) {
      const auto& wc = proto_tcp.weighted_clusters();
      for (int i = 0; i < wc.clusters_size(); ++i) {
        if (wc.clusters(i).name().empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(tf, ".weighted_clusters.clusters[", i, "].name: empty"));
        }
        tcp.weighted.push_back(WeightedCluster{wc.clusters(i).name(), wc.clusters(i).weight()});
        tcp.total_weight += wc.clusters(i).weight();
      }
      if (tcp.total_weight == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(tf, ".weighted_clusters: needs a cluster with weight > 0"));
      }
    } else {
      tcp.cluster = proto_tcp.cluster();
      if (tcp.cluster.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(tf, ".cluster: empty"));
      }
    }
    chain.filter = std::move(tcp);
    return chain;
  }
  return absl::InvalidArgumentError(absl::StrCat(ff, ": unsupported network filter \"",
                                                 filter.name(), "\" (", type, ")"));
}

// How specifically each criterion of a match fits a connection: -1 it does not, 0 it is
// unset (matches anything), higher is more specific.
int PrefixScore(const std::vector<Cidr>& ranges, const boost::asio::ip::address& ip) {
  if (ranges.empty()) return 0;
  int best = -1;
  for (const Cidr& cidr : ranges) {
    if (cidr.Contains(ip)) best = std::max(best, static_cast<int>(cidr.prefix_len) + 1);
  }
  return best;
}

int ServerNameScore(const std::vector<std::string>& names, std::string_view server_name) {
  if (names.empty()) return 0;
  constexpr int kExact = 1 << 20;  // beats any wildcard (names are shorter than this)
  int best = -1;
  for (const std::string& name : names) {
    if (name == server_name) return kExact;
    // "*.example.com" holds any name ending in ".example.com" (not "example.com" itself);
    // the longest wildcard wins.
    std::string_view suffix = std::string_view(name).substr(1);
    if (name[0] == '*' && server_name.size() > suffix.size() &&
        server_name.ends_with(suffix)) {
      best = std::max(best, static_cast<int>(suffix.size()));
    }
  }
  return best;
}

int SetScore(bool set, bool matches) {
  if (!set) return 0;
  return matches ? 1 : -1;
}

int SourceTypeScore(FilterChainMatch::SourceType type, const ConnectionMatchInput& input) {
  using SourceType = FilterChainMatch::SourceType;
  if (type == SourceType::kAny) return 0;
  const auto& source = input.source.address();
  const bool local = source.is_loopback() || source == input.destination.address();
  return (type == SourceType::kSameIpOrLoopback) == local ? 1 : -1;
}

// filter_disabled, as far as Envoy nests it (a control plane's, so the depth is bounded only
// to keep the recursion sane).
absl::StatusOr<ListenerFilterPredicate> ParseListenerFilterPredicate(
    const envoy::config::listener::v3::ListenerFilterChainMatchPredicate& proto,
    const std::string& field, int depth) {
  using Proto = envoy::config::listener::v3::ListenerFilterChainMatchPredicate;
  using Kind = ListenerFilterPredicate::Kind;
  if (depth > 16) return absl::InvalidArgumentError(absl::StrCat(field, ": nested too deep"));
  ListenerFilterPredicate predicate;
  auto rules = [&](const Proto::MatchSet& set, const char* name) -> absl::Status {
    for (int i = 0; i < set.rules_size(); ++i) {
      auto rule = ParseListenerFilterPredicate(
          set.rules(i), absl::StrCat(field, ".", name, ".rules[", i, "]"), depth + 1);
      if (!rule.ok()) return rule.status();
      predicate.rules.push_back(*std::move(rule));
    }
    if (set.rules_size() < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".", name, ".rules: needs at least 2 rules"));
    }
    return absl::OkStatus();
  };
  switch (proto.rule_case()) {
    case Proto::kOrMatch:
      predicate.kind = Kind::kOr;
      if (auto status = rules(proto.or_match(), "or_match"); !status.ok()) return status;
      break;
    case Proto::kAndMatch:
      predicate.kind = Kind::kAnd;
      if (auto status = rules(proto.and_match(), "and_match"); !status.ok()) return status;
      break;
    case Proto::kNotMatch: {
      predicate.kind = Kind::kNot;
      auto rule = ParseListenerFilterPredicate(proto.not_match(),
                                               absl::StrCat(field, ".not_match"), depth + 1);
      if (!rule.ok()) return rule.status();
      predicate.rules.push_back(*std::move(rule));
      break;
    }
    case Proto::kAnyMatch:
      predicate.kind = Kind::kAny;
      break;
    case Proto::kDestinationPortRange: {
      const auto& range = proto.destination_port_range();
      if (range.start() < 0 || range.end() > 65536 || range.start() >= range.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".destination_port_range: [", range.start(), ", ", range.end(),
            ") is not a range of ports"));
      }
      predicate.kind = Kind::kPortRange;
      predicate.start = static_cast<uint32_t>(range.start());
      predicate.end = static_cast<uint32_t>(range.end());
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(field, ": no rule"));
  }
  return predicate;
}

}  // namespace

bool ListenerFilterPredicate::Matches(uint32_t port) const {
  switch (kind) {
    case Kind::kAny: return true;
    case Kind::kOr:
      return std::any_of(rules.begin(), rules.end(), [port](const auto& r) { return r.Matches(port); });
    case Kind::kAnd:
      return std::all_of(rules.begin(), rules.end(), [port](const auto& r) { return r.Matches(port); });
    case Kind::kNot: return !rules.front().Matches(port);
    case Kind::kPortRange: return port >= start && port < end;
  }
  return false;
}

const FilterChain* ListenerConfig::ChainFor(const ConnectionMatchInput& input) const {
  std::vector<const FilterChain*> candidates;
  for (const FilterChain& chain : chains) candidates.push_back(&chain);
  // Keeps only the candidates that fit best by `score`; none if none fits.
  auto keep_most_specific = [&candidates](auto score) {
    int best = -1;
    for (const FilterChain* chain : candidates) best = std::max(best, score(chain->match));
    std::erase_if(candidates,
                  [&](const FilterChain* chain) { return best < 0 || score(chain->match) != best; });
  };
  const std::vector<std::string> no_protocols;
  const std::vector<std::string>& alpn =
      input.application_protocols ? *input.application_protocols : no_protocols;
  keep_most_specific([&](const FilterChainMatch& m) {
    return SetScore(m.destination_port != 0, m.destination_port == input.destination.port());
  });
  keep_most_specific([&](const FilterChainMatch& m) {
    return PrefixScore(m.prefix_ranges, input.destination.address());
  });
  keep_most_specific(
      [&](const FilterChainMatch& m) { return ServerNameScore(m.server_names, input.server_name); });
  keep_most_specific([&](const FilterChainMatch& m) {
    return SetScore(!m.transport_protocol.empty(), m.transport_protocol == input.transport_protocol);
  });
  keep_most_specific([&](const FilterChainMatch& m) {
    return SetScore(!m.application_protocols.empty(),
                    absl::c_any_of(alpn, [&](const std::string& protocol) {
                      return absl::c_linear_search(m.application_protocols, protocol);
                    }));
  });
  keep_most_specific([&](const FilterChainMatch& m) {
    return PrefixScore(m.direct_source_prefix_ranges, input.source.address());
  });
  keep_most_specific(
      [&](const FilterChainMatch& m) { return SourceTypeScore(m.source_type, input); });
  keep_most_specific([&](const FilterChainMatch& m) {
    return PrefixScore(m.source_prefix_ranges, input.source.address());
  });
  keep_most_specific([&](const FilterChainMatch& m) {
    return SetScore(!m.source_ports.empty(),
                    absl::c_linear_search(m.source_ports, input.source.port()));
  });
  if (!candidates.empty()) return candidates.front();
  return default_chain ? &*default_chain : nullptr;
}

bool ListenerConfig::Keeps(const ListenerConfig& old, const HttpChain& http) const {
  if (&old == this) return true;
  if (fingerprint != old.fingerprint) return false;
  const FilterChain* was = nullptr;
  auto holds = [&http](const FilterChain& chain) {
    const auto* filter = std::get_if<HttpChain>(&chain.filter);
    return filter == &http;
  };
  for (const FilterChain& chain : old.chains) {
    if (holds(chain)) was = &chain;
  }
  if (old.default_chain && holds(*old.default_chain)) was = &*old.default_chain;
  if (was == nullptr) return false;
  for (const FilterChain& chain : chains) {
    if (chain.fingerprint == was->fingerprint) return true;
  }
  return default_chain && default_chain->fingerprint == was->fingerprint;
}

absl::StatusOr<std::shared_ptr<const ListenerConfig>> ParseListener(
    const listener_v3::Listener& proto) {
  auto listener = std::make_shared<ListenerConfig>();
  listener->name = proto.name();
  if (listener->name.empty()) return absl::InvalidArgumentError("name: empty");
  if (proto.has_api_listener()) {
    return absl::InvalidArgumentError("api_listener: meshproxy serves only socket listeners");
  }
  const auto& sa = proto.address().socket_address();
  if (!proto.address().has_socket_address()) {
    return absl::InvalidArgumentError("address.socket_address: missing");
  }
  boost::system::error_code ec;
  auto ip = boost::asio::ip::make_address(sa.address(), ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "address.socket_address.address: \"", sa.address(), "\" is not an IP address"));
  }
  if (sa.port_value() > 65535) {
    return absl::InvalidArgumentError("address.socket_address.port_value: must be <= 65535");
  }
  listener->address = boost::asio::ip::tcp::endpoint(ip, static_cast<uint16_t>(sa.port_value()));
  listener->bind_to_port = !proto.has_bind_to_port() || proto.bind_to_port().value();
  listener->use_original_dst = proto.has_use_original_dst() && proto.use_original_dst().value();
  listener->inbound = proto.traffic_direction() == envoy::config::core::v3::INBOUND;
  if (listener->bind_to_port && sa.port_value() == 0) {
    return absl::InvalidArgumentError("address.socket_address.port_value: must be set to bind");
  }
  for (int i = 0; i < proto.listener_filters_size(); ++i) {
    const envoy::config::listener::v3::ListenerFilter& filter = proto.listener_filters(i);
    const std::string field = absl::StrCat("listener_filters[", i, "]");
    // original_dst is what use_original_dst does here.
    ListenerFilter* inspector = nullptr;
    if (filter.name() == "envoy.filters.listener.tls_inspector") {
      inspector = &listener->tls_inspector;
    } else if (filter.name() == "envoy.filters.listener.http_inspector") {
      inspector = &listener->http_inspector;
    } else if (filter.name() != "envoy.filters.listener.original_dst") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": unsupported listener filter \"", filter.name(), "\""));
    }
    if (inspector == nullptr) continue;
    inspector->enabled = true;
    if (filter.has_filter_disabled()) {
      auto disabled = ParseListenerFilterPredicate(filter.filter_disabled(),
                                                   absl::StrCat(field, ".filter_disabled"), 0);
      if (!disabled.ok()) return disabled.status();
      inspector->disabled = *std::move(disabled);
    }
  }
  if (proto.has_listener_filters_timeout()) {
    const auto& d = proto.listener_filters_timeout();
    if (d.seconds() < 0 || d.nanos() < 0) {
      return absl::InvalidArgumentError("listener_filters_timeout: must be >= 0");
    }
    listener->listener_filters_timeout = ToMillis(d);
  }
  listener->continue_on_listener_filters_timeout = proto.continue_on_listener_filters_timeout();
  for (int i = 0; i < proto.filter_chains_size(); ++i) {
    auto chain = ParseChain(proto.filter_chains(i), absl::StrCat("filter_chains[", i, "]"));
    if (!chain.ok()) return chain.status();
    chain->fingerprint = Fingerprint(proto.filter_chains(i));
    listener->chains.push_back(*std::move(chain));
  }
  if (proto.has_default_filter_chain()) {
    auto chain = ParseChain(proto.default_filter_chain(), "default_filter_chain");
    if (!chain.ok()) return chain.status();
    chain->fingerprint = Fingerprint(proto.default_filter_chain());
    listener->default_chain = *std::move(chain);
  }
  listener_v3::Listener settings = proto;
  settings.clear_filter_chains();
  settings.clear_default_filter_chain();
  listener->fingerprint = Fingerprint(settings);
  if (listener->chains.empty() && !listener->default_chain) {
    return absl::InvalidArgumentError("filter_chains: empty and no default_filter_chain");
  }
  return std::shared_ptr<const ListenerConfig>(std::move(listener));
}

}  // namespace meshpilot::sidecar::config
