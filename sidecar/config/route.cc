#include "sidecar/config/route.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "envoy/extensions/filters/http/cors/v3/cors.pb.h"
#include "envoy/extensions/filters/http/fault/v3/fault.pb.h"
#include "sidecar/config/duration.h"

namespace meshpilot::sidecar::config {
namespace {

namespace route_v3 = envoy::config::route::v3;
using google::protobuf::Duration;

absl::StatusOr<RouteMatch> ParseMatch(const route_v3::RouteMatch& proto, const std::string& field) {
  RouteMatch match;
  match.case_sensitive = !proto.has_case_sensitive() || proto.case_sensitive().value();
  switch (proto.path_specifier_case()) {
    case route_v3::RouteMatch::kPrefix:
      match.kind = RouteMatch::PathKind::kPrefix;
      match.path = proto.prefix();
      break;
    case route_v3::RouteMatch::kPath:
      match.kind = RouteMatch::PathKind::kPath;
      match.path = proto.path();
      break;
    case route_v3::RouteMatch::kPathSeparatedPrefix:
      match.kind = RouteMatch::PathKind::kPathSeparatedPrefix;
      match.path = proto.path_separated_prefix();
      if (match.path.empty() || match.path[0] != '/' ||
          (match.path.size() > 1 && match.path.back() == '/')) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".path_separated_prefix: must start with '/' and not end with '/'"));
      }
      break;
    case route_v3::RouteMatch::kSafeRegex: {
      match.kind = RouteMatch::PathKind::kRegex;
      auto regex = CompileRegex(proto.safe_regex(), absl::StrCat(field, ".safe_regex"));
      if (!regex.ok()) return regex.status();
      match.regex = *std::move(regex);
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": unsupported path specifier (prefix, path, safe_regex, path_separated_prefix)"));
  }
  if (!match.case_sensitive) match.path = absl::AsciiStrToLower(match.path);
  for (int i = 0; i < proto.headers_size(); ++i) {
    auto header = ParseHeaderMatcher(proto.headers(i), absl::StrCat(field, ".headers[", i, "]"));
    if (!header.ok()) return header.status();
    match.headers.push_back(*std::move(header));
  }
  for (int i = 0; i < proto.query_parameters_size(); ++i) {
    const auto& q = proto.query_parameters(i);
    const std::string qf = absl::StrCat(field, ".query_parameters[", i, "]");
    QueryParamMatch param;
    param.name = q.name();
    if (param.name.empty()) return absl::InvalidArgumentError(absl::StrCat(qf, ".name: empty"));
    if (q.has_string_match()) {
      auto value = ParseStringMatch(q.string_match(), absl::StrCat(qf, ".string_match"));
      if (!value.ok()) return value.status();
      param.value = *std::move(value);
    }
    match.query_params.push_back(std::move(param));
  }
  return match;
}

absl::StatusOr<uint32_t> PerMillion(const envoy::type::v3::FractionalPercent& percent,
                                    const std::string& field) {
  uint64_t scale = 1;
  switch (percent.denominator()) {
    case envoy::type::v3::FractionalPercent::HUNDRED: scale = 10000; break;
    case envoy::type::v3::FractionalPercent::TEN_THOUSAND: scale = 100; break;
    case envoy::type::v3::FractionalPercent::MILLION: scale = 1; break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(field, ".denominator: unknown value"));
  }
  return static_cast<uint32_t>(std::min<uint64_t>(1000000, percent.numerator() * scale));
}

absl::StatusOr<RouteAction> ParseAction(const route_v3::RouteAction& proto,
                                        const std::string& field) {
  RouteAction action;
  switch (proto.cluster_specifier_case()) {
    case route_v3::RouteAction::kCluster:
      action.cluster = proto.cluster();
      if (action.cluster.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(field, ".cluster: empty"));
      }
      break;
    case route_v3::RouteAction::kWeightedClusters: {
      const auto& wc = proto.weighted_clusters();
      for (int i = 0; i < wc.clusters_size(); ++i) {
        const auto& c = wc.clusters(i);
        const std::string cf = absl::StrCat(field, ".weighted_clusters.clusters[", i, "]");
        if (c.name().empty()) return absl::InvalidArgumentError(absl::StrCat(cf, ".name: empty"));
        WeightedCluster cluster;
        cluster.name = c.name();
        cluster.weight = c.has_weight() ? c.weight().value() : 0;
        cluster.host_rewrite = c.host_rewrite_literal();
        auto req = ParseHeaderMutations(c.request_headers_to_add(), c.request_headers_to_remove(),
                                        absl::StrCat(cf, ".request_headers_to_add"));
        if (!req.ok()) return req.status();
        auto res = ParseHeaderMutations(c.response_headers_to_add(),
                                        c.response_headers_to_remove(),
                                        absl::StrCat(cf, ".response_headers_to_add"));
        if (!res.ok()) return res.status();
        cluster.request_headers = *std::move(req);
        cluster.response_headers = *std::move(res);
        action.total_weight += cluster.weight;
        action.weighted.push_back(std::move(cluster));
      }
      if (action.weighted.empty() || action.total_weight == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".weighted_clusters: needs at least one cluster with weight > 0"));
      }
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": unsupported cluster specifier (cluster, weighted_clusters)"));
  }
  action.prefix_rewrite = proto.prefix_rewrite();
  if (proto.has_regex_rewrite()) {
    auto regex = CompileRegex(proto.regex_rewrite().pattern(),
                              absl::StrCat(field, ".regex_rewrite.pattern"));
    if (!regex.ok()) return regex.status();
    action.regex_rewrite = *std::move(regex);
    action.regex_substitution = proto.regex_rewrite().substitution();
  }
  switch (proto.host_rewrite_specifier_case()) {
    case route_v3::RouteAction::kHostRewriteLiteral:
      action.host_rewrite = proto.host_rewrite_literal();
      break;
    case route_v3::RouteAction::kAutoHostRewrite:
      action.auto_host_rewrite = proto.auto_host_rewrite().value();
      break;
    case route_v3::RouteAction::HOST_REWRITE_SPECIFIER_NOT_SET:
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": unsupported host rewrite (host_rewrite_literal, auto_host_rewrite)"));
  }
  if (proto.has_timeout()) {
    if (auto s = CheckDuration(proto.timeout(), absl::StrCat(field, ".timeout")); !s.ok()) return s;
    action.timeout = ToMillis(proto.timeout());
  }
  auto duration = [&](const Duration& d, const char* name,
                      std::chrono::milliseconds& out) -> absl::Status {
    if (auto s = CheckDuration(d, absl::StrCat(field, ".", name)); !s.ok()) return s;
    out = ToMillis(d);
    return absl::OkStatus();
  };
  StreamTimeouts& timeouts = action.stream_timeouts;
  if (proto.has_max_stream_duration()) {
    const auto& msd = proto.max_stream_duration();
    if (msd.has_max_stream_duration()) {
      auto s = duration(msd.max_stream_duration(), "max_stream_duration.max_stream_duration",
                        timeouts.max_stream_duration.emplace());
      if (!s.ok()) return s;
    }
    if (msd.has_grpc_timeout_header_max()) {
      auto s = duration(msd.grpc_timeout_header_max(),
                        "max_stream_duration.grpc_timeout_header_max",
                        timeouts.grpc_timeout_header_max.emplace());
      if (!s.ok()) return s;
    }
    if (msd.has_grpc_timeout_header_offset()) {
      auto s = duration(msd.grpc_timeout_header_offset(),
                        "max_stream_duration.grpc_timeout_header_offset",
                        timeouts.grpc_timeout_header_offset);
      if (!s.ok()) return s;
    }
  } else if (proto.has_max_grpc_timeout()) {
    timeouts.legacy = true;
    auto s = duration(proto.max_grpc_timeout(), "max_grpc_timeout",
                      timeouts.grpc_timeout_header_max.emplace());
    if (!s.ok()) return s;
    if (proto.has_grpc_timeout_offset()) {
      s = duration(proto.grpc_timeout_offset(), "grpc_timeout_offset",
                   timeouts.grpc_timeout_header_offset);
      if (!s.ok()) return s;
    }
  }
  if (proto.has_retry_policy()) {
    auto retry = ParseRetryPolicy(proto.retry_policy(), absl::StrCat(field, ".retry_policy"));
    if (!retry.ok()) return retry.status();
    action.retry = *std::move(retry);
  }
  for (int i = 0; i < proto.hash_policy_size(); ++i) {
    const auto& hp = proto.hash_policy(i);
    const std::string hf = absl::StrCat(field, ".hash_policy[", i, "]");
    HashPolicy policy;
    policy.terminal = hp.terminal();
    using P = route_v3::RouteAction::HashPolicy;
    switch (hp.policy_specifier_case()) {
      case P::kHeader:
        policy.kind = HashPolicy::Kind::kHeader;
        policy.name = absl::AsciiStrToLower(hp.header().header_name());
        break;
      case P::kCookie:
        policy.kind = HashPolicy::Kind::kCookie;
        policy.name = hp.cookie().name();
        if (hp.cookie().has_ttl()) {
          policy.cookie_ttl = std::chrono::seconds(hp.cookie().ttl().seconds());
        }
        policy.cookie_path = hp.cookie().path();
        break;
      case P::kConnectionProperties:
        if (!hp.connection_properties().source_ip()) continue;
        policy.kind = HashPolicy::Kind::kSourceIp;
        break;
      case P::kQueryParameter:
        policy.kind = HashPolicy::Kind::kQueryParameter;
        policy.name = hp.query_parameter().name();
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            hf, ": unsupported (header, cookie, connection_properties, query_parameter)"));
    }
    if (policy.kind != HashPolicy::Kind::kSourceIp && policy.name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(hf, ": empty name"));
    }
    action.hash_policies.push_back(std::move(policy));
  }
  for (int i = 0; i < proto.request_mirror_policies_size(); ++i) {
    const auto& mp = proto.request_mirror_policies(i);
    const std::string mf = absl::StrCat(field, ".request_mirror_policies[", i, "]");
    MirrorPolicy mirror;
    mirror.cluster = mp.cluster();
    if (mirror.cluster.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(mf, ".cluster: empty (cluster_header is not supported)"));
    }
    mirror.append_shadow_suffix = !mp.disable_shadow_host_suffix_append();
    if (mp.has_runtime_fraction()) {
      auto percent = PerMillion(mp.runtime_fraction().default_value(),
                                absl::StrCat(mf, ".runtime_fraction.default_value"));
      if (!percent.ok()) return percent.status();
      mirror.per_million = *percent;
    }
    action.mirrors.push_back(std::move(mirror));
  }
  for (int i = 0; i < proto.upgrade_configs_size(); ++i) {
    auto upgrade = ParseUpgradeConfig(proto.upgrade_configs(i),
                                      absl::StrCat(field, ".upgrade_configs[", i, "]"));
    if (!upgrade.ok()) return upgrade.status();
    action.upgrades[upgrade->first] = upgrade->second;
  }
  return action;
}

absl::StatusOr<Redirect> ParseRedirect(const route_v3::RedirectAction& proto,
                                       const std::string& field) {
  Redirect redirect;
  if (proto.https_redirect()) redirect.scheme = "https";
  if (!proto.scheme_redirect().empty()) redirect.scheme = proto.scheme_redirect();
  redirect.host = proto.host_redirect();
  redirect.port = proto.port_redirect();
  redirect.path = proto.path_redirect();
  redirect.prefix_rewrite = proto.prefix_rewrite();
  redirect.strip_query = proto.strip_query();
  switch (proto.response_code()) {
    case route_v3::RedirectAction::MOVED_PERMANENTLY: redirect.status = 301; break;
    case route_v3::RedirectAction::FOUND: redirect.status = 302; break;
    case route_v3::RedirectAction::SEE_OTHER: redirect.status = 303; break;
    case route_v3::RedirectAction::TEMPORARY_REDIRECT: redirect.status = 307; break;
    case route_v3::RedirectAction::PERMANENT_REDIRECT: redirect.status = 308; break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(field, ".response_code: unknown value"));
  }
  if (proto.has_regex_rewrite()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".regex_rewrite: not supported"));
  }
  return redirect;
}

absl::StatusOr<Cors> ParseCors(const google::protobuf::Any& any, const std::string& field) {
  envoy::extensions::filters::http::cors::v3::CorsPolicy proto;
  if (!any.UnpackTo(&proto)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not a CorsPolicy (", any.type_url(), ")"));
  }
  Cors cors;
  for (int i = 0; i < proto.allow_origin_string_match_size(); ++i) {
    auto origin = ParseStringMatch(proto.allow_origin_string_match(i),
                                   absl::StrCat(field, ".allow_origin_string_match[", i, "]"));
    if (!origin.ok()) return origin.status();
    cors.allow_origins.push_back(*std::move(origin));
  }
  cors.allow_methods = proto.allow_methods();
  cors.allow_headers = proto.allow_headers();
  cors.expose_headers = proto.expose_headers();
  cors.max_age = proto.max_age();
  cors.allow_credentials = proto.allow_credentials().value();
  cors.allow_private_network_access = proto.allow_private_network_access().value();
  if (proto.has_forward_not_matching_preflights()) {
    cors.forward_not_matching_preflights = proto.forward_not_matching_preflights().value();
  }
  if (proto.has_filter_enabled()) {
    auto percent = PerMillion(proto.filter_enabled().default_value(),
                              absl::StrCat(field, ".filter_enabled.default_value"));
    if (!percent.ok()) return percent.status();
    cors.enabled_per_million = *percent;
  }
  return cors;
}

absl::StatusOr<Fault> ParseFault(const google::protobuf::Any& any, const std::string& field) {
  envoy::extensions::filters::http::fault::v3::HTTPFault proto;
  if (!any.UnpackTo(&proto)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not an HTTPFault (", any.type_url(), ")"));
  }
  if (proto.headers_size() > 0 || proto.downstream_nodes_size() > 0 || proto.has_response_rate_limit()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": only delay.fixed_delay and abort (http_status, grpc_status) are supported"));
  }
  Fault fault;
  if (proto.has_delay()) {
    if (!proto.delay().has_fixed_delay()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".delay: only fixed_delay is supported"));
    }
    if (auto s = CheckDuration(proto.delay().fixed_delay(), absl::StrCat(field, ".delay.fixed_delay"));
        !s.ok()) {
      return s;
    }
    fault.delay = ToMillis(proto.delay().fixed_delay());
    auto percent = PerMillion(proto.delay().percentage(), absl::StrCat(field, ".delay.percentage"));
    if (!percent.ok()) return percent.status();
    fault.delay_per_million = *percent;
  }
  if (proto.has_abort()) {
    const auto& abort = proto.abort();
    using Abort = envoy::extensions::filters::http::fault::v3::FaultAbort;
    switch (abort.error_type_case()) {
      case Abort::kHttpStatus:
        if (abort.http_status() < 200 || abort.http_status() >= 600) {
          return absl::InvalidArgumentError(
              absl::StrCat(field, ".abort.http_status: must be in [200, 600)"));
        }
        fault.abort_http_status = abort.http_status();
        break;
      case Abort::kGrpcStatus:
        fault.abort_grpc_status = abort.grpc_status();
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".abort: only http_status and grpc_status are supported"));
    }
    auto percent = PerMillion(abort.percentage(), absl::StrCat(field, ".abort.percentage"));
    if (!percent.ok()) return percent.status();
    fault.abort_per_million = *percent;
  }
  return fault;
}

// The per-filter configs meshproxy applies, at one level (route, virtual host or route
// configuration).
struct PerFilterConfigs {
  std::optional<Fault> fault;
  std::optional<Cors> cors;
};

absl::Status ParsePerFilterConfigs(
    const google::protobuf::Map<std::string, google::protobuf::Any>& configs,
    const std::string& field, PerFilterConfigs& out) {
  for (const auto& [filter, config] : configs) {
    const std::string ff = absl::StrCat(field, "[", filter, "]");
    if (filter == "envoy.filters.http.fault") {
      auto fault = ParseFault(config, ff);
      if (!fault.ok()) return fault.status();
      out.fault = *std::move(fault);
    } else if (filter == "envoy.filters.http.cors") {
      auto cors = ParseCors(config, ff);
      if (!cors.ok()) return cors.status();
      out.cors = *std::move(cors);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(ff, ": unsupported filter config"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<HeaderMatch> ParseHeaderMatcher(const route_v3::HeaderMatcher& proto,
                                               const std::string& field) {
  HeaderMatch header;
  header.name = absl::AsciiStrToLower(proto.name());
  if (header.name.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ".name: empty"));
  header.invert = proto.invert_match();
  header.treat_missing_as_empty = proto.treat_missing_header_as_empty();
  using H = route_v3::HeaderMatcher;
  envoy::type::matcher::v3::StringMatcher sm;
  switch (proto.header_match_specifier_case()) {
    case H::kExactMatch:
      sm.set_exact(proto.exact_match());
      break;
    case H::kSafeRegexMatch:
      *sm.mutable_safe_regex() = proto.safe_regex_match();
      break;
    case H::kPrefixMatch:
      sm.set_prefix(proto.prefix_match());
      break;
    case H::kSuffixMatch:
      sm.set_suffix(proto.suffix_match());
      break;
    case H::kContainsMatch:
      sm.set_contains(proto.contains_match());
      break;
    case H::kStringMatch:
      sm = proto.string_match();
      break;
    case H::kPresentMatch:
      header.present = proto.present_match();
      break;
    case H::HEADER_MATCH_SPECIFIER_NOT_SET:
      break;  // present
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": unsupported header match (range_match)"));
  }
  if (sm.match_pattern_case() != envoy::type::matcher::v3::StringMatcher::MATCH_PATTERN_NOT_SET) {
    auto value = ParseStringMatch(sm, field);
    if (!value.ok()) return value.status();
    header.value = *std::move(value);
  }
  return header;
}

absl::StatusOr<std::vector<HeaderValuePart>> ParseHeaderValueFormat(std::string_view text,
                                                                   const std::string& field) {
  using Kind = HeaderValuePart::Kind;
  const absl::string_view value(text.data(), text.size());
  static const auto* const kCommands = new absl::flat_hash_map<absl::string_view, Kind>{
      {"DOWNSTREAM_REMOTE_ADDRESS", Kind::kDownstreamRemoteAddress},
      {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", Kind::kDownstreamRemoteAddressWithoutPort},
      {"DOWNSTREAM_DIRECT_REMOTE_ADDRESS", Kind::kDownstreamRemoteAddress},
      {"DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT", Kind::kDownstreamRemoteAddressWithoutPort},
      {"DOWNSTREAM_REMOTE_PORT", Kind::kDownstreamRemotePort},
      {"DOWNSTREAM_LOCAL_ADDRESS", Kind::kDownstreamLocalAddress},
      {"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", Kind::kDownstreamLocalAddressWithoutPort},
      {"DOWNSTREAM_LOCAL_PORT", Kind::kDownstreamLocalPort},
      {"UPSTREAM_CLUSTER", Kind::kUpstreamCluster},
      {"PROTOCOL", Kind::kProtocol},
      {"HOSTNAME", Kind::kHostname},
      {"START_TIME", Kind::kStartTime},
  };
  std::vector<HeaderValuePart> parts;
  auto literal = [&parts](absl::string_view piece) {
    if (piece.empty()) return;
    if (parts.empty() || parts.back().kind != Kind::kLiteral) parts.push_back({});
    parts.back().text.append(piece.data(), piece.size());
  };
  size_t pos = 0;
  while (pos < value.size()) {
    const size_t percent = value.find('%', pos);
    literal(value.substr(pos, percent == absl::string_view::npos ? percent : percent - pos));
    if (percent == absl::string_view::npos) break;
    if (percent + 1 < value.size() && value[percent + 1] == '%') {
      literal("%");
      pos = percent + 2;
      continue;
    }
    const size_t end = value.find('%', percent + 1);
    if (end == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": a '%' starts a command that does not end (write '%%' for a literal '%')"));
    }
    absl::string_view command = value.substr(percent + 1, end - percent - 1);
    pos = end + 1;
    HeaderValuePart part;
    if (absl::ConsumePrefix(&command, "REQ(")) {
      const size_t close = command.find(')');
      if (close == absl::string_view::npos || close == 0) {
        return absl::InvalidArgumentError(absl::StrCat(field, ": %REQ(...)% needs a header name"));
      }
      part.kind = Kind::kRequestHeader;
      part.text = absl::AsciiStrToLower(command.substr(0, close));
      absl::string_view rest = command.substr(close + 1);
      if (!rest.empty()) {
        size_t max = 0;
        if (!absl::ConsumePrefix(&rest, ":") || !absl::SimpleAtoi(rest, &max)) {
          return absl::InvalidArgumentError(
              absl::StrCat(field, ": after %REQ(NAME)% only :MAX_LENGTH may follow"));
        }
        part.max_length = max;
      }
    } else if (auto it = kCommands->find(command); it != kCommands->end()) {
      part.kind = it->second;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": %", command, "% is not a command meshproxy supports"));
    }
    parts.push_back(std::move(part));
  }
  return parts;
}

absl::StatusOr<HeaderMutations> ParseHeaderMutations(
    const google::protobuf::RepeatedPtrField<envoy::config::core::v3::HeaderValueOption>& add,
    const google::protobuf::RepeatedPtrField<std::string>& remove, const std::string& field) {
  using Option = envoy::config::core::v3::HeaderValueOption;
  HeaderMutations mutations;
  for (int i = 0; i < add.size(); ++i) {
    const Option& o = add[i];
    HeaderToAdd header;
    header.key = absl::AsciiStrToLower(o.header().key());
    if (header.key.empty() || header.key[0] == ':') {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[", i, "].header.key: must be a non-empty regular header name"));
    }
    const std::string value_field = absl::StrCat(field, "[", i, "].header.value");
    auto format = ParseHeaderValueFormat(o.header().value(), value_field);
    if (!format.ok()) return format.status();
    if (format->size() == 1 && (*format)[0].kind == HeaderValuePart::Kind::kLiteral) {
      header.value = std::move((*format)[0].text);
    } else if (!format->empty()) {
      header.format = *std::move(format);
    }
    if (o.has_append()) {
      header.action = o.append().value() ? HeaderToAdd::Action::kAppendIfExistsOrAdd
                                         : HeaderToAdd::Action::kOverwriteIfExistsOrAdd;
    } else {
      switch (o.append_action()) {
        case Option::APPEND_IF_EXISTS_OR_ADD:
          header.action = HeaderToAdd::Action::kAppendIfExistsOrAdd;
          break;
        case Option::ADD_IF_ABSENT:
          header.action = HeaderToAdd::Action::kAddIfAbsent;
          break;
        case Option::OVERWRITE_IF_EXISTS_OR_ADD:
          header.action = HeaderToAdd::Action::kOverwriteIfExistsOrAdd;
          break;
        case Option::OVERWRITE_IF_EXISTS:
          header.action = HeaderToAdd::Action::kOverwriteIfExists;
          break;
        default:
          return absl::InvalidArgumentError(
              absl::StrCat(field, "[", i, "].append_action: unknown value"));
      }
    }
    mutations.add.push_back(std::move(header));
  }
  for (const std::string& name : remove) mutations.remove.push_back(absl::AsciiStrToLower(name));
  return mutations;
}

absl::StatusOr<RetryPolicy> ParseRetryPolicy(const route_v3::RetryPolicy& proto,
                                             const std::string& field) {
  RetryPolicy policy;
  for (absl::string_view token : absl::StrSplit(proto.retry_on(), ',', absl::SkipWhitespace())) {
    token = absl::StripAsciiWhitespace(token);
    if (token == "5xx") {
      policy.on_5xx = true;
    } else if (token == "gateway-error") {
      policy.on_gateway_error = true;
    } else if (token == "connect-failure" || token == "http3-post-connect-failure") {
      policy.on_connect_failure = true;
    } else if (token == "reset" || token == "reset-before-request") {
      policy.on_reset = true;
    } else if (token == "retriable-4xx") {
      policy.on_retriable_4xx = true;
    } else if (token == "retriable-status-codes") {
      policy.on_retriable_status_codes = true;
    } else if (token == "refused-stream") {
      policy.on_refused_stream = true;
    } else if (token == "cancelled") {
      policy.on_grpc_cancelled = true;
    } else if (token == "deadline-exceeded") {
      policy.on_grpc_deadline_exceeded = true;
    } else if (token == "internal") {
      policy.on_grpc_internal = true;
    } else if (token == "resource-exhausted") {
      policy.on_grpc_resource_exhausted = true;
    } else if (token == "unavailable") {
      policy.on_grpc_unavailable = true;
    } else if (token == "envoy-ratelimited" || token == "retriable-headers") {
      // Conditions on headers meshproxy never sees (no rate-limit filter, no
      // retriable_headers matcher): accepted, never true.
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".retry_on: unknown condition \"", token, "\""));
    }
  }
  if (proto.has_num_retries()) policy.num_retries = proto.num_retries().value();
  if (proto.has_per_try_timeout()) {
    if (auto s = CheckDuration(proto.per_try_timeout(), absl::StrCat(field, ".per_try_timeout"));
        !s.ok()) {
      return s;
    }
    policy.per_try_timeout = ToMillis(proto.per_try_timeout());
  }
  for (uint32_t code : proto.retriable_status_codes()) {
    policy.retriable_status_codes.push_back(code);
  }
  if (proto.has_retry_back_off()) {
    const auto& backoff = proto.retry_back_off();
    policy.base_interval = ToMillis(backoff.base_interval());
    if (policy.base_interval.count() <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".retry_back_off.base_interval: must be > 0"));
    }
    policy.max_interval = backoff.has_max_interval() ? ToMillis(backoff.max_interval())
                                                     : policy.base_interval * 10;
    if (policy.max_interval < policy.base_interval) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".retry_back_off.max_interval: must be >= base_interval"));
    }
  }
  for (const auto& predicate : proto.retry_host_predicate()) {
    if (predicate.name() == "envoy.retry_host_predicates.previous_hosts") {
      policy.avoid_previous_hosts = true;
    }
  }
  return policy;
}

absl::StatusOr<std::shared_ptr<const RouteTable>> ParseRouteConfiguration(
    const route_v3::RouteConfiguration& proto) {
  auto table = std::make_shared<RouteTable>();
  table->name = proto.name();
  auto req = ParseHeaderMutations(proto.request_headers_to_add(),
                                  proto.request_headers_to_remove(), "request_headers_to_add");
  if (!req.ok()) return req.status();
  auto res = ParseHeaderMutations(proto.response_headers_to_add(),
                                  proto.response_headers_to_remove(), "response_headers_to_add");
  if (!res.ok()) return res.status();
  table->request_headers = *std::move(req);
  table->response_headers = *std::move(res);
  PerFilterConfigs table_filters;
  if (auto status = ParsePerFilterConfigs(proto.typed_per_filter_config(),
                                          "typed_per_filter_config", table_filters);
      !status.ok()) {
    return status;
  }
  for (int v = 0; v < proto.virtual_hosts_size(); ++v) {
    const route_v3::VirtualHost& vh = proto.virtual_hosts(v);
    const std::string vf = absl::StrCat("virtual_hosts[", v, "]");
    VirtualHost vhost;
    vhost.name = vh.name();
    if (vh.domains_size() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(vf, ".domains: must not be empty"));
    }
    for (int d = 0; d < vh.domains_size(); ++d) {
      std::string domain = absl::AsciiStrToLower(vh.domains(d));
      if (domain.empty() ||
          (domain != "*" && domain.find('*') != domain.rfind('*'))) {
        return absl::InvalidArgumentError(absl::StrCat(
            vf, ".domains[", d, "]: \"", domain, "\" is not a domain or a single-wildcard pattern"));
      }
      vhost.domains.push_back(std::move(domain));
    }
    auto vreq = ParseHeaderMutations(vh.request_headers_to_add(), vh.request_headers_to_remove(),
                                     absl::StrCat(vf, ".request_headers_to_add"));
    if (!vreq.ok()) return vreq.status();
    auto vres = ParseHeaderMutations(vh.response_headers_to_add(),
                                     vh.response_headers_to_remove(),
                                     absl::StrCat(vf, ".response_headers_to_add"));
    if (!vres.ok()) return vres.status();
    vhost.request_headers = *std::move(vreq);
    vhost.response_headers = *std::move(vres);
    if (vh.has_retry_policy()) {
      auto retry = ParseRetryPolicy(vh.retry_policy(), absl::StrCat(vf, ".retry_policy"));
      if (!retry.ok()) return retry.status();
      vhost.retry = *std::move(retry);
    }
    PerFilterConfigs vhost_filters;
    if (auto status = ParsePerFilterConfigs(vh.typed_per_filter_config(),
                                            absl::StrCat(vf, ".typed_per_filter_config"),
                                            vhost_filters);
        !status.ok()) {
      return status;
    }
    if (!vhost_filters.fault) vhost_filters.fault = table_filters.fault;
    if (!vhost_filters.cors) vhost_filters.cors = table_filters.cors;
    for (int r = 0; r < vh.routes_size(); ++r) {
      const route_v3::Route& rp = vh.routes(r);
      const std::string rf = absl::StrCat(vf, ".routes[", r, "]");
      Route route;
      route.name = rp.name();
      auto match = ParseMatch(rp.match(), absl::StrCat(rf, ".match"));
      if (!match.ok()) return match.status();
      route.match = *std::move(match);
      switch (rp.action_case()) {
        case route_v3::Route::kRoute: {
          auto action = ParseAction(rp.route(), absl::StrCat(rf, ".route"));
          if (!action.ok()) return action.status();
          if (!action->retry) action->retry = vhost.retry;
          route.action = *std::move(action);
          break;
        }
        case route_v3::Route::kRedirect: {
          auto redirect = ParseRedirect(rp.redirect(), absl::StrCat(rf, ".redirect"));
          if (!redirect.ok()) return redirect.status();
          route.action = *std::move(redirect);
          break;
        }
        case route_v3::Route::kDirectResponse: {
          const auto& dr = rp.direct_response();
          if (dr.status() < 200 || dr.status() > 599) {
            return absl::InvalidArgumentError(
                absl::StrCat(rf, ".direct_response.status: must be in [200, 600)"));
          }
          route.action = DirectResponse{dr.status(), dr.body().inline_string()};
          break;
        }
        default:
          return absl::InvalidArgumentError(
              absl::StrCat(rf, ": unsupported action (route, redirect, direct_response)"));
      }
      auto rreq = ParseHeaderMutations(rp.request_headers_to_add(),
                                       rp.request_headers_to_remove(),
                                       absl::StrCat(rf, ".request_headers_to_add"));
      if (!rreq.ok()) return rreq.status();
      auto rres = ParseHeaderMutations(rp.response_headers_to_add(),
                                       rp.response_headers_to_remove(),
                                       absl::StrCat(rf, ".response_headers_to_add"));
      if (!rres.ok()) return rres.status();
      route.request_headers = *std::move(rreq);
      route.response_headers = *std::move(rres);
      // The most specific filter config wins whole (Envoy's rule): the route's, else its
      // virtual host's, else the route configuration's.
      PerFilterConfigs own;
      if (auto status = ParsePerFilterConfigs(rp.typed_per_filter_config(),
                                              absl::StrCat(rf, ".typed_per_filter_config"), own);
          !status.ok()) {
        return status;
      }
      route.fault = own.fault ? own.fault : vhost_filters.fault;
      route.cors = own.cors ? own.cors : vhost_filters.cors;
      vhost.routes.push_back(std::move(route));
    }
    table->virtual_hosts.push_back(std::move(vhost));
  }
  table->domains = VirtualHostIndex(table->virtual_hosts);
  return std::shared_ptr<const RouteTable>(std::move(table));
}

VirtualHostIndex::VirtualHostIndex(const std::vector<VirtualHost>& virtual_hosts) {
  // Patterns of one length share a table: (length, table), sorted longest first below.
  auto add = [](std::vector<std::pair<size_t, ByPattern>>& by_length, std::string pattern,
                size_t vhost) {
    auto it = std::find_if(by_length.begin(), by_length.end(),
                           [&](const auto& entry) { return entry.first == pattern.size(); });
    if (it == by_length.end()) it = by_length.insert(by_length.end(), {pattern.size(), {}});
    it->second.try_emplace(std::move(pattern), vhost);
  };
  for (size_t v = 0; v < virtual_hosts.size(); ++v) {
    for (const std::string& domain : virtual_hosts[v].domains) {
      if (domain == "*") {
        if (!any) any = v;
      } else if (domain.front() == '*') {
        add(suffixes, domain.substr(1), v);
      } else if (domain.back() == '*') {
        add(prefixes, domain.substr(0, domain.size() - 1), v);
      } else {
        exact.try_emplace(domain, v);
      }
    }
  }
  auto longest_first = [](const auto& a, const auto& b) { return a.first > b.first; };
  std::sort(suffixes.begin(), suffixes.end(), longest_first);
  std::sort(prefixes.begin(), prefixes.end(), longest_first);
}

}  // namespace meshpilot::sidecar::config
