#include "translator/http_route.h"

#include <cmath>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "envoy/extensions/filters/http/cors/v3/cors.pb.h"
#include "envoy/extensions/filters/http/fault/v3/fault.pb.h"
#include "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.pb.h"
#include "translator/duration.h"
#include "translator/subset.h"
#include "translator/traffic_policy.h"

namespace meshpilot::translator {
namespace {

using envoy::config::core::v3::HeaderValueOption;
using envoy::config::route::v3::HeaderMatcher;
using envoy::config::route::v3::RetryPolicy;
using envoy::config::route::v3::Route;
using envoy::config::route::v3::RouteAction;
using envoy::type::matcher::v3::StringMatcher;
using model::StringMatch;

// Istio's default retry policy (istiod's retry.DefaultPolicy).
constexpr char kDefaultRetryOn[] =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

RetryPolicy DefaultRetryPolicy() {
  RetryPolicy policy;
  policy.set_retry_on(kDefaultRetryOn);
  policy.mutable_num_retries()->set_value(2);
  policy.add_retriable_status_codes(503);
  auto* predicate = policy.add_retry_host_predicate();
  predicate->set_name("envoy.retry_host_predicates.previous_hosts");
  predicate->mutable_typed_config()->PackFrom(
      envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate());
  policy.set_host_selection_retry_max_attempts(5);
  return policy;
}

// Istio: no `retries` keeps the default policy; attempts 0 turns retries off; status codes
// in retryOn become retriable_status_codes (and imply retriable-status-codes).
std::optional<RetryPolicy> TranslateRetries(const std::optional<model::HttpRetry>& retries) {
  RetryPolicy policy = DefaultRetryPolicy();
  if (!retries) return policy;
  if (retries->attempts <= 0) return std::nullopt;
  policy.mutable_num_retries()->set_value(retries->attempts);
  if (!retries->retry_on.empty()) {
    std::vector<std::string> conditions;
    policy.clear_retriable_status_codes();
    for (absl::string_view part : absl::StrSplit(retries->retry_on, ',', absl::SkipEmpty())) {
      std::string condition(absl::StripAsciiWhitespace(part));
      uint32_t code = 0;
      if (absl::SimpleAtoi(condition, &code)) {
        policy.add_retriable_status_codes(code);
      } else {
        conditions.push_back(condition);
      }
    }
    if (policy.retriable_status_codes_size() > 0 &&
        !absl::c_linear_search(conditions, "retriable-status-codes")) {
      conditions.push_back("retriable-status-codes");
    }
    policy.set_retry_on(absl::StrJoin(conditions, ","));
  }
  if (retries->per_try_timeout) {
    SetDuration(*retries->per_try_timeout, *policy.mutable_per_try_timeout());
  }
  if (retries->retry_ignore_previous_hosts == false) {
    policy.clear_retry_host_predicate();
    policy.clear_host_selection_retry_max_attempts();
  }
  if (retries->backoff) {
    SetDuration(*retries->backoff, *policy.mutable_retry_back_off()->mutable_base_interval());
  }
  return policy;
}

envoy::type::v3::FractionalPercent Percent(std::optional<double> percentage) {
  envoy::type::v3::FractionalPercent out;
  out.set_numerator(static_cast<uint32_t>(std::llround(percentage.value_or(100) * 10000)));
  out.set_denominator(envoy::type::v3::FractionalPercent::MILLION);
  return out;
}

StringMatcher ToStringMatcher(const StringMatch& match) {
  StringMatcher out;
  switch (match.type) {
    case StringMatch::Type::kExact: out.set_exact(match.value); break;
    case StringMatch::Type::kPrefix: out.set_prefix(match.value); break;
    case StringMatch::Type::kRegex: out.mutable_safe_regex()->set_regex(match.value); break;
    case StringMatch::Type::kPresent: break;
  }
  return out;
}

// gRPC's xDS client (1.51) reads the classic header matcher fields; Envoy takes string_match.
// The classic fields are deprecated in Envoy's API, hence the pragma.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
HeaderMatcher ToHeaderMatcher(const std::string& name, const StringMatch& match, bool grpc) {
  HeaderMatcher out;
  out.set_name(name);
  if (match.type == StringMatch::Type::kPresent) {
    out.set_present_match(true);
  } else if (!grpc) {
    *out.mutable_string_match() = ToStringMatcher(match);
  } else if (match.type == StringMatch::Type::kExact) {
    out.set_exact_match(match.value);
  } else if (match.type == StringMatch::Type::kPrefix) {
    out.set_prefix_match(match.value);
  } else {
    out.mutable_safe_regex_match()->set_regex(match.value);
  }
  return out;
}
#pragma GCC diagnostic pop

bool LabelsInclude(const std::map<std::string, std::string>& labels,
                   const std::map<std::string, std::string>& wanted) {
  for (const auto& [key, value] : wanted) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

// Whether a match block applies to routes built for this proxy and port at all.
bool AppliesHere(const model::HttpMatchRequest& match, const RouteContext& context) {
  if (!match.gateways.empty() && !absl::c_linear_search(match.gateways, "mesh")) return false;
  if (!LabelsInclude(context.proxy.labels, match.source_labels)) return false;
  if (!match.source_namespace.empty() && match.source_namespace != context.proxy.namespace_) {
    return false;
  }
  return !match.port || *match.port == context.port;
}

envoy::config::route::v3::RouteMatch TranslateMatch(const model::HttpMatchRequest* match,
                                                    bool grpc) {
  envoy::config::route::v3::RouteMatch out;
  if (match == nullptr || !match->uri) {
    out.set_prefix("/");
  } else {
    const StringMatch& uri = *match->uri;
    switch (uri.type) {
      case StringMatch::Type::kExact: out.set_path(uri.value); break;
      case StringMatch::Type::kPrefix: out.set_prefix(uri.value.empty() ? "/" : uri.value); break;
      case StringMatch::Type::kRegex: out.mutable_safe_regex()->set_regex(uri.value); break;
      case StringMatch::Type::kPresent: out.set_prefix("/"); break;
    }
  }
  if (match == nullptr) return out;
  if (match->ignore_uri_case) out.mutable_case_sensitive()->set_value(false);
  for (const auto& [name, value] : {std::pair{":authority", &match->authority},
                                    std::pair{":method", &match->method},
                                    std::pair{":scheme", &match->scheme}}) {
    if (*value) *out.add_headers() = ToHeaderMatcher(name, **value, grpc);
  }
  for (const auto& [name, value] : match->headers) {
    *out.add_headers() = ToHeaderMatcher(name, value, grpc);
  }
  for (const auto& [name, value] : match->without_headers) {
    HeaderMatcher header = ToHeaderMatcher(name, value, grpc);
    header.set_invert_match(true);
    *out.add_headers() = std::move(header);
  }
  // gRPC's xDS client ignores routes with query parameter matchers, which is the right
  // outcome for requests that cannot carry any.
  for (const auto& [name, value] : match->query_params) {
    auto* param = out.add_query_parameters();
    param->set_name(name);
    if (value.type == StringMatch::Type::kPresent) {
      param->set_present_match(true);
    } else {
      *param->mutable_string_match() = ToStringMatcher(value);
    }
  }
  return out;
}

bool MatchesEverything(const envoy::config::route::v3::RouteMatch& match) {
  return match.prefix() == "/" && match.headers().empty() && match.query_parameters().empty() &&
         !match.has_case_sensitive();
}

bool IsAuthority(const std::string& name) {
  return absl::EqualsIgnoreCase(name, ":authority") || absl::EqualsIgnoreCase(name, "host");
}

// Envoy's header operations for Istio's set/add/remove; a set of the authority becomes a host
// rewrite instead (returned), as Istio does.
std::string AddHeaderOperations(const model::HeaderOperations& ops, bool request,
                                google::protobuf::RepeatedPtrField<HeaderValueOption>* to_add,
                                google::protobuf::RepeatedPtrField<std::string>* to_remove) {
  std::string authority;
  for (const auto& [entries, action] :
       {std::pair{&ops.set, HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD},
        std::pair{&ops.add, HeaderValueOption::APPEND_IF_EXISTS_OR_ADD}}) {
    for (const auto& [name, value] : *entries) {
      if (request && IsAuthority(name)) {
        authority = value;
        continue;
      }
      HeaderValueOption* option = to_add->Add();
      option->mutable_header()->set_key(name);
      option->mutable_header()->set_value(value);
      option->set_append_action(action);
    }
  }
  for (const std::string& name : ops.remove) *to_remove->Add() = name;
  return authority;
}

template <typename Target>
std::string AddHeaders(const model::Headers& headers, Target& target) {
  std::string authority =
      AddHeaderOperations(headers.request, true, target.mutable_request_headers_to_add(),
                          target.mutable_request_headers_to_remove());
  AddHeaderOperations(headers.response, false, target.mutable_response_headers_to_add(),
                      target.mutable_response_headers_to_remove());
  return authority;
}

uint32_t GrpcStatusCode(const std::string& name) {
  static constexpr const char* kCodes[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
      "UNAUTHENTICATED"};
  for (uint32_t code = 0; code < std::size(kCodes); ++code) {
    if (name == kCodes[code]) return code;
  }
  return 2;  // UNKNOWN; validation rejects other names
}

// The fault filter's per-route config. An unset percentage applies to every request (the
// model's reading of Istio's API); it is always written out, so no proxy's default decides.
envoy::extensions::filters::http::fault::v3::HTTPFault TranslateFault(
    const model::HttpFaultInjection& fault) {
  envoy::extensions::filters::http::fault::v3::HTTPFault out;
  if (fault.delay) {
    auto* delay = out.mutable_delay();
    SetDuration(fault.delay->fixed_delay, *delay->mutable_fixed_delay());
    *delay->mutable_percentage() = Percent(fault.delay->percentage);
  }
  if (fault.abort) {
    auto* abort = out.mutable_abort();
    if (!fault.abort->grpc_status.empty()) {
      abort->set_grpc_status(GrpcStatusCode(fault.abort->grpc_status));
    } else {
      abort->set_http_status(fault.abort->http_status);
    }
    *abort->mutable_percentage() = Percent(fault.abort->percentage);
  }
  return out;
}

envoy::extensions::filters::http::cors::v3::CorsPolicy TranslateCors(const model::CorsPolicy& in) {
  envoy::extensions::filters::http::cors::v3::CorsPolicy out;
  for (const StringMatch& origin : in.allow_origins) {
    *out.add_allow_origin_string_match() = ToStringMatcher(origin);
  }
  out.set_allow_methods(absl::StrJoin(in.allow_methods, ","));
  out.set_allow_headers(absl::StrJoin(in.allow_headers, ","));
  out.set_expose_headers(absl::StrJoin(in.expose_headers, ","));
  if (in.max_age) {
    out.set_max_age(
        absl::StrCat(std::chrono::duration_cast<std::chrono::seconds>(*in.max_age).count()));
  }
  if (in.allow_credentials) out.mutable_allow_credentials()->set_value(*in.allow_credentials);
  using Unmatched = model::CorsPolicy::UnmatchedPreflights;
  if (in.unmatched_preflights != Unmatched::kUnspecified) {
    out.mutable_forward_not_matching_preflights()->set_value(in.unmatched_preflights ==
                                                             Unmatched::kForward);
  }
  return out;
}

envoy::config::route::v3::RedirectAction TranslateRedirect(const model::HttpRedirect& in,
                                                           uint32_t port) {
  using Action = envoy::config::route::v3::RedirectAction;
  Action out;
  if (!in.uri.empty()) out.set_path_redirect(in.uri);
  if (!in.authority.empty()) out.set_host_redirect(in.authority);
  if (!in.scheme.empty()) out.set_scheme_redirect(in.scheme);
  if (in.port) {
    out.set_port_redirect(*in.port);
  } else if (in.derive_port == model::HttpRedirect::DerivePort::kFromRequestPort) {
    // Routes are built per port, so "the request's port" is this one (as istiod does).
    out.set_port_redirect(port);
  }
  switch (in.redirect_code) {
    case 302: out.set_response_code(Action::FOUND); break;
    case 303: out.set_response_code(Action::SEE_OTHER); break;
    case 307: out.set_response_code(Action::TEMPORARY_REDIRECT); break;
    case 308: out.set_response_code(Action::PERMANENT_REDIRECT); break;
    default: out.set_response_code(Action::MOVED_PERMANENTLY); break;
  }
  return out;
}

void AddHashPolicies(const model::Destination& destination, const ResolvedDestination& resolved,
                     const RouteContext& context, RouteAction& action) {
  if (resolved.service == nullptr) return;
  const model::DestinationRule* rule = context.rules.ForService(*resolved.service);
  ClusterTrafficPolicy policy =
      ResolveTrafficPolicy(rule, FindSubset(rule, destination.subset), resolved.port);
  for (auto& hash_policy : HashPolicies(policy)) {
    std::string key = hash_policy.SerializeAsString();
    bool seen = absl::c_any_of(action.hash_policy(), [&](const auto& existing) {
      return existing.SerializeAsString() == key;
    });
    if (!seen) *action.add_hash_policy() = std::move(hash_policy);
  }
}

void TranslateForward(const model::HttpRoute& rule, const model::VirtualService& vs,
                      const RouteContext& context, Route& route) {
  const bool grpc = context.proxy.proxyless_grpc;
  RouteAction& action = *route.mutable_route();
  auto resolve = [&](const model::Destination& destination) {
    return ResolveDestination(context.state, destination, vs.meta.namespace_, context.port);
  };
  std::string authority = AddHeaders(rule.headers, route);

  // Istio: weight 0 destinations are dropped when there are others; one destination gets
  // all traffic whatever its weight.
  std::vector<const model::HttpRouteDestination*> destinations;
  for (const model::HttpRouteDestination& destination : rule.route) {
    if (rule.route.size() == 1 || destination.weight > 0) destinations.push_back(&destination);
  }
  if (destinations.size() == 1) {
    const model::HttpRouteDestination& only = *destinations.front();
    ResolvedDestination resolved = resolve(only.destination);
    action.set_cluster(resolved.cluster);
    std::string destination_authority = AddHeaders(only.headers, route);
    if (!destination_authority.empty()) authority = destination_authority;
    AddHashPolicies(only.destination, resolved, context, action);
  } else {
    auto* weighted = action.mutable_weighted_clusters();
    uint32_t total = 0;
    for (const model::HttpRouteDestination* destination : destinations) {
      ResolvedDestination resolved = resolve(destination->destination);
      auto* cluster = weighted->add_clusters();
      cluster->set_name(resolved.cluster);
      cluster->mutable_weight()->set_value(destination->weight);
      total += destination->weight;
      std::string destination_authority = AddHeaders(destination->headers, *cluster);
      if (!destination_authority.empty()) {
        cluster->set_host_rewrite_literal(destination_authority);
      }
      AddHashPolicies(destination->destination, resolved, context, action);
    }
    // Deprecated in Envoy, which sums the weights itself; older gRPC clients require it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    weighted->mutable_total_weight()->set_value(total);
#pragma GCC diagnostic pop
  }

  if (rule.rewrite) {
    if (!rule.rewrite->uri.empty()) action.set_prefix_rewrite(rule.rewrite->uri);
    if (rule.rewrite->uri_regex_rewrite) {
      auto* regex = action.mutable_regex_rewrite();
      regex->mutable_pattern()->set_regex(rule.rewrite->uri_regex_rewrite->match);
      regex->set_substitution(rule.rewrite->uri_regex_rewrite->rewrite);
    }
    if (!rule.rewrite->authority.empty()) authority = rule.rewrite->authority;
  }
  if (!authority.empty()) action.set_host_rewrite_literal(authority);

  // Istio (route.go): no timeout unless the VirtualService sets one. gRPC clients read it from
  // max_stream_duration. Sidecars honour a request's grpc-timeout: with a timeout, capped by it
  // through the deprecated max_grpc_timeout (Istio keeps to it: max_stream_duration has
  // regressions in Envoy); without one, uncapped as the stream's limit (max_stream_duration and
  // grpc_timeout_header_max 0s).
  std::chrono::milliseconds timeout = rule.timeout.value_or(std::chrono::milliseconds(0));
  SetDuration(timeout, *action.mutable_timeout());
  if (grpc) {
    if (timeout.count() > 0) {
      SetDuration(timeout, *action.mutable_max_stream_duration()->mutable_max_stream_duration());
    }
  } else if (timeout.count() > 0) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    SetDuration(timeout, *action.mutable_max_grpc_timeout());
#pragma GCC diagnostic pop
  } else {
    auto* duration = action.mutable_max_stream_duration();
    SetDuration(timeout, *duration->mutable_max_stream_duration());
    SetDuration(timeout, *duration->mutable_grpc_timeout_header_max());
  }

  if (std::optional<RetryPolicy> retry = TranslateRetries(rule.retries)) {
    if (grpc) {
      // gRPC reads retry_on (its status codes among them), num_retries and retry_back_off.
      RetryPolicy read_by_grpc;
      read_by_grpc.set_retry_on(retry->retry_on());
      *read_by_grpc.mutable_num_retries() = retry->num_retries();
      if (retry->has_retry_back_off()) {
        *read_by_grpc.mutable_retry_back_off() = retry->retry_back_off();
      }
      retry = std::move(read_by_grpc);
    }
    *action.mutable_retry_policy() = std::move(*retry);
  }

  auto add_mirror = [&](const model::Destination& destination, std::optional<double> percentage) {
    auto* mirror = action.add_request_mirror_policies();
    mirror->set_cluster(resolve(destination).cluster);
    if (percentage) {
      *mirror->mutable_runtime_fraction()->mutable_default_value() = Percent(percentage);
    }
  };
  if (rule.mirror) add_mirror(*rule.mirror, rule.mirror_percentage);
  for (const model::HttpMirrorPolicy& mirror : rule.mirrors) {
    add_mirror(mirror.destination, mirror.percentage);
  }
}

std::optional<Route> TranslateRule(const model::HttpRoute& rule,
                                   const model::HttpMatchRequest* match,
                                   const model::VirtualService& vs, const RouteContext& context) {
  const bool grpc = context.proxy.proxyless_grpc;
  if (match != nullptr && !AppliesHere(*match, context)) return std::nullopt;
  Route route;
  std::string name = rule.name;
  if (match != nullptr && !match->name.empty()) {
    name = name.empty() ? match->name : absl::StrCat(name, ".", match->name);
  }
  route.set_name(name);
  *route.mutable_match() = TranslateMatch(match, grpc);
  if (match != nullptr && !match->stat_prefix.empty() && !grpc) {
    route.set_stat_prefix(match->stat_prefix);
  }

  if (rule.redirect) {
    *route.mutable_redirect() = TranslateRedirect(*rule.redirect, context.port);
    AddHeaders(rule.headers, route);
  } else if (rule.direct_response) {
    auto* response = route.mutable_direct_response();
    response->set_status(rule.direct_response->status);
    if (rule.direct_response->body) {
      response->mutable_body()->set_inline_string(*rule.direct_response->body);
    }
    AddHeaders(rule.headers, route);
  } else {
    TranslateForward(rule, vs, context, route);
  }

  if (rule.fault) {
    (*route.mutable_typed_per_filter_config())[kFaultFilter].PackFrom(TranslateFault(*rule.fault));
  }
  // gRPC's xDS client has no CORS filter and rejects config for filters it does not know.
  if (rule.cors_policy && !grpc) {
    (*route.mutable_typed_per_filter_config())[kCorsFilter].PackFrom(
        TranslateCors(*rule.cors_policy));
  }
  return route;
}

}  // namespace

bool AppendHttpRoutes(const model::VirtualService& vs, const RouteContext& context,
                      std::vector<Route>& routes) {
  for (const model::HttpRoute& rule : vs.http) {
    std::vector<const model::HttpMatchRequest*> matches;
    for (const model::HttpMatchRequest& match : rule.match) matches.push_back(&match);
    if (matches.empty()) matches.push_back(nullptr);
    for (const model::HttpMatchRequest* match : matches) {
      std::optional<Route> route = TranslateRule(rule, match, vs, context);
      if (!route) continue;
      bool catch_all = MatchesEverything(route->match());
      routes.push_back(std::move(*route));
      if (catch_all) return true;
    }
  }
  return false;
}

Route DefaultRoute(const std::string& cluster, const ProxyInfo& proxy,
                   const ClusterTrafficPolicy& policy) {
  Route route;
  route.set_name("default");
  route.mutable_match()->set_prefix("/");
  auto* action = route.mutable_route();
  action->set_cluster(cluster);
  // Istio turns off Envoy's default 15s route timeout: no timeout unless a VirtualService sets one.
  action->mutable_timeout()->set_seconds(0);
  if (!proxy.proxyless_grpc) *action->mutable_retry_policy() = DefaultRetryPolicy();
  for (auto& hash_policy : HashPolicies(policy)) *action->add_hash_policy() = std::move(hash_policy);
  return route;
}

}  // namespace meshpilot::translator
