#include "controlplane/convert/virtual_service.h"

#include <algorithm>
#include <array>
#include <tuple>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "controlplane/convert/validation.h"

namespace meshpilot::convert {
namespace {

// Istio's VirtualService delegation (http[].delegate and delegate VirtualServices without
// hosts) is out of meshpilot's scope: such objects are rejected rather than half-served.
constexpr absl::string_view kNoDelegation =
    "VirtualService delegation is not supported by meshpilot; put the delegate's http routes "
    "in this VirtualService (a VirtualService needs hosts)";

using model::StringMatch;

// Where a StringMatch is used changes what it may hold.
enum class MatchUse {
  kUri,            // an empty prefix is fine: it matches every path
  kValue,          // headers, query parameters, scheme, method, authority, CORS origins
  kWithoutHeader,  // regex "*" is no RE2 regex: Istio reads it as "header present"
};

StringMatch ReadStringMatch(MapReader& reader, MatchUse use) {
  static constexpr std::array<std::pair<absl::string_view, StringMatch::Type>, 3> kTypes = {{
      {"exact", StringMatch::Type::kExact},
      {"prefix", StringMatch::Type::kPrefix},
      {"regex", StringMatch::Type::kRegex},
  }};
  StringMatch match;
  int set = 0;
  for (const auto& [key, type] : kTypes) {
    if (std::optional<std::string> value = reader.String(key)) {
      match = {type, std::move(*value)};
      ++set;
    }
  }
  if (set > 1) reader.Error("only one of exact, prefix or regex may be set");
  if (match.type == StringMatch::Type::kPrefix && match.value.empty() && use != MatchUse::kUri) {
    reader.FieldError("prefix", "must not be empty");
  }
  if (match.type == StringMatch::Type::kRegex) {
    if (use == MatchUse::kWithoutHeader && match.value == "*") {
      match = {StringMatch::Type::kPresent, ""};
    } else {
      reader.CheckField("regex", ValidateRegex(match.value));
    }
  }
  return match;
}

model::Destination ReadDestination(MapReader& reader) {
  model::Destination destination;
  destination.host = reader.RequiredString("host");
  if (destination.host == "*") {
    reader.FieldError("host", "must not be the wildcard *");
  } else if (!destination.host.empty()) {
    reader.CheckField("host", ValidateWildcardDomain(destination.host));
  }
  if (std::optional<std::string> subset = reader.String("subset")) {
    destination.subset = *subset;
    reader.CheckField("subset", ValidateDnsLabel(*subset));
  }
  if (std::optional<MapReader> port = reader.Map("port")) {
    destination.port = port->RequiredPort("number");
  }
  return destination;
}

model::Destination ReadRequiredDestination(MapReader& reader) {
  std::optional<MapReader> destination = reader.Map("destination");
  if (!destination) {
    reader.FieldError("destination", "required");
    return {};
  }
  return ReadDestination(*destination);
}

// Weights are relative, so Istio asks only that they are not negative and, when there is a
// choice, not all zero.
int32_t ReadWeight(MapReader& reader) {
  std::optional<int64_t> weight = reader.Int("weight", INT32_MIN, INT32_MAX);
  if (weight && *weight < 0) {
    reader.FieldError("weight", "must be >= 0");
    return 0;
  }
  return static_cast<int32_t>(weight.value_or(0));
}

template <typename RouteDestination>
void CheckTotalWeight(MapReader& route, const std::vector<RouteDestination>& destinations) {
  int64_t total = 0;
  for (const RouteDestination& destination : destinations) total += destination.weight;
  if (destinations.size() > 1 && total == 0) {
    route.FieldError("route", "total weight must be > 0 when there is more than one destination");
  }
}

std::optional<double> ReadPercentage(MapReader& reader, absl::string_view key) {
  std::optional<MapReader> percentage = reader.Map(key);
  if (!percentage) return std::nullopt;
  double value = percentage->Double("value").value_or(0);
  percentage->CheckField("value", ValidatePercentage(value));
  return value;
}

bool IsAuthorityHeader(absl::string_view name) {
  return absl::EqualsIgnoreCase(name, ":authority") || absl::EqualsIgnoreCase(name, "host");
}

// Envoy cannot set pseudo-headers or Host, except the authority of a request, which
// Istio allows as a rewrite.
absl::Status ValidateHeaderOperation(absl::string_view name, bool may_set_authority) {
  if (name.empty()) return absl::InvalidArgumentError("header name must not be empty");
  if (may_set_authority && IsAuthorityHeader(name)) return absl::OkStatus();
  if (absl::EqualsIgnoreCase(name, "host")) {
    return absl::InvalidArgumentError("the Host header cannot be changed here");
  }
  if (absl::StartsWith(name, ":")) {
    return absl::InvalidArgumentError("pseudo-headers (\":\" prefix) cannot be changed");
  }
  return absl::OkStatus();
}

absl::Status ValidateHeaderValue(absl::string_view value) {
  for (char c : value) {
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
      return absl::InvalidArgumentError("header value must not hold control characters");
    }
  }
  return absl::OkStatus();
}

// Envoy reads header values as format strings: `%%` is a literal `%`, `%COMMAND%` a
// substitution. A `%` that starts no complete command makes Envoy (and meshproxy) reject the
// whole route configuration, so the VirtualService is rejected here, alone.
absl::Status ValidateHeaderValueFormat(absl::string_view value) {
  for (size_t i = value.find('%'); i != absl::string_view::npos; i = value.find('%', i)) {
    if (i + 1 < value.size() && value[i + 1] == '%') {
      i += 2;
      continue;
    }
    const size_t end = value.find('%', i + 1);
    if (end == absl::string_view::npos || end == i + 1) {
      return absl::InvalidArgumentError(
          "a '%' starts an Envoy %COMMAND% that does not end (write '%%' for a literal '%')");
    }
    i = end + 1;
  }
  return absl::OkStatus();
}

model::HeaderOperations ReadHeaderOperations(MapReader& reader, bool request) {
  model::HeaderOperations operations;
  for (auto [key, values] :
       {std::pair{"set", &operations.set}, std::pair{"add", &operations.add}}) {
    *values = reader.StringMap(key);
    for (const auto& [name, value] : *values) {
      std::string field = absl::StrCat(key, "[", name, "]");
      reader.CheckField(field, ValidateHeaderOperation(name, request));
      reader.CheckField(field, ValidateHeaderValue(value));
      if (!(request && IsAuthorityHeader(name))) {  // a host rewrite is no format string
        reader.CheckField(field, ValidateHeaderValueFormat(value));
      }
    }
  }
  operations.remove = reader.StringList("remove");
  for (size_t i = 0; i < operations.remove.size(); ++i) {
    reader.CheckField(absl::StrCat("remove[", i, "]"),
                      ValidateHeaderOperation(operations.remove[i], false));
  }
  return operations;
}

model::Headers ReadHeaders(MapReader& reader) {
  model::Headers headers;
  if (std::optional<MapReader> request = reader.Map("request")) {
    headers.request = ReadHeaderOperations(*request, /*request=*/true);
  }
  if (std::optional<MapReader> response = reader.Map("response")) {
    headers.response = ReadHeaderOperations(*response, /*request=*/false);
  }
  return headers;
}

model::HttpMatchRequest ReadHttpMatch(MapReader& reader) {
  model::HttpMatchRequest match;
  match.name = reader.String("name").value_or("");
  for (auto [key, field, use] : {std::tuple{"uri", &match.uri, MatchUse::kUri},
                                 std::tuple{"scheme", &match.scheme, MatchUse::kValue},
                                 std::tuple{"method", &match.method, MatchUse::kValue},
                                 std::tuple{"authority", &match.authority, MatchUse::kValue}}) {
    if (std::optional<MapReader> value = reader.Map(key)) *field = ReadStringMatch(*value, use);
  }
  for (auto [key, field, use] :
       {std::tuple{"headers", &match.headers, MatchUse::kValue},
        std::tuple{"withoutHeaders", &match.without_headers, MatchUse::kWithoutHeader}}) {
    for (auto& [name, value] : reader.Entries(key)) {
      if (absl::Status status = ValidateHeaderMatchName(name); !status.ok()) {
        value.Error(status.message());
      }
      (*field)[name] = ReadStringMatch(value, use);
    }
  }
  for (auto& [name, value] : reader.Entries("queryParams")) {
    match.query_params[name] = ReadStringMatch(value, MatchUse::kValue);
  }
  match.port = reader.Port("port");
  match.source_labels = reader.StringMap("sourceLabels");
  match.gateways = reader.StringList("gateways");
  match.source_namespace = reader.String("sourceNamespace").value_or("");
  if (!match.source_namespace.empty()) {
    reader.CheckField("sourceNamespace", ValidateDnsLabel(match.source_namespace));
  }
  match.ignore_uri_case = reader.Bool("ignoreUriCase").value_or(false);
  match.stat_prefix = reader.String("statPrefix").value_or("");
  return match;
}

model::HttpRouteDestination ReadHttpRouteDestination(MapReader& reader) {
  model::HttpRouteDestination destination;
  destination.destination = ReadRequiredDestination(reader);
  destination.weight = ReadWeight(reader);
  if (std::optional<MapReader> headers = reader.Map("headers")) {
    destination.headers = ReadHeaders(*headers);
  }
  return destination;
}

model::HttpRedirect ReadRedirect(MapReader& reader) {
  model::HttpRedirect redirect;
  redirect.uri = reader.String("uri").value_or("");
  redirect.authority = reader.String("authority").value_or("");
  redirect.port = reader.Port("port");
  using DerivePort = model::HttpRedirect::DerivePort;
  redirect.derive_port = reader.Enumerator<DerivePort>(
      "derivePort", {{"FROM_PROTOCOL_DEFAULT", DerivePort::kFromProtocolDefault},
                     {"FROM_REQUEST_PORT", DerivePort::kFromRequestPort}});
  if (redirect.port && redirect.derive_port) {
    reader.FieldError("derivePort", "only one of port and derivePort may be set");
  }
  redirect.scheme = reader.String("scheme").value_or("");
  if (!redirect.scheme.empty() && redirect.scheme != "http" && redirect.scheme != "https") {
    reader.FieldError("scheme", "must be \"http\" or \"https\"");
  }
  redirect.redirect_code = reader.Int("redirectCode", 300, 399).value_or(301);
  // What Envoy's RedirectAction can answer; Istio drops the route for any other code.
  if (reader.Has("redirectCode") && redirect.redirect_code != 301 &&
      redirect.redirect_code != 302 && redirect.redirect_code != 303 &&
      redirect.redirect_code != 307 && redirect.redirect_code != 308) {
    reader.FieldError("redirectCode", "must be one of 301, 302, 303, 307 or 308");
  }
  if (redirect.uri.empty() && redirect.authority.empty() && !reader.Has("port") &&
      !reader.Has("derivePort") && redirect.scheme.empty()) {
    reader.Error("must set uri, authority, scheme or port");
  }
  return redirect;
}

model::HttpDirectResponse ReadDirectResponse(MapReader& reader) {
  constexpr size_t kMaxBody = 1 << 20;  // larger bodies are too heavy for the control plane
  model::HttpDirectResponse response;
  if (!reader.Has("status")) reader.FieldError("status", "required");
  response.status = reader.Int("status", 200, 599).value_or(0);
  if (std::optional<MapReader> body = reader.Map("body")) {
    std::optional<std::string> text = body->String("string");
    if (std::optional<std::string> bytes = body->String("bytes")) {
      std::string decoded;
      if (text) body->Error("only one of string and bytes may be set");
      if (!absl::Base64Unescape(*bytes, &decoded)) body->FieldError("bytes", "must be base64");
      text = std::move(decoded);
    }
    if (text && text->size() > kMaxBody) body->Error("must be less than 1MB");
    response.body = std::move(text);
  }
  return response;
}

model::HttpRewrite ReadRewrite(MapReader& reader) {
  model::HttpRewrite rewrite;
  rewrite.uri = reader.String("uri").value_or("");
  rewrite.authority = reader.String("authority").value_or("");
  if (std::optional<MapReader> regex = reader.Map("uriRegexRewrite")) {
    rewrite.uri_regex_rewrite = model::RegexRewrite{regex->RequiredString("match"),
                                                    regex->RequiredString("rewrite")};
    if (!rewrite.uri_regex_rewrite->match.empty()) {
      regex->CheckField("match", ValidateRegex(rewrite.uri_regex_rewrite->match));
    }
    if (!rewrite.uri.empty()) reader.Error("only one of uri and uriRegexRewrite may be set");
  }
  if (rewrite.uri.empty() && !rewrite.uri_regex_rewrite && rewrite.authority.empty()) {
    reader.Error("must set uri, uriRegexRewrite or authority");
  }
  return rewrite;
}

bool IsRetryPolicy(absl::string_view policy) {
  // Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on values.
  static constexpr absl::string_view kPolicies[] = {
      "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
      "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
      "envoy-ratelimited", "http3-post-connect-failure", "cancelled", "deadline-exceeded",
      "internal", "resource-exhausted", "unavailable"};
  int status = 0;
  return absl::c_linear_search(kPolicies, policy) ||
         (absl::SimpleAtoi(policy, &status) && status >= 100 && status <= 599);
}

model::HttpRetry ReadRetry(MapReader& reader) {
  model::HttpRetry retry;
  retry.attempts = static_cast<int32_t>(reader.Int("attempts", 0, INT32_MAX).value_or(0));
  retry.per_try_timeout = reader.Duration("perTryTimeout");
  retry.retry_on = reader.String("retryOn").value_or("");
  if (!retry.retry_on.empty()) {
    for (absl::string_view policy : absl::StrSplit(retry.retry_on, ',')) {
      if (!IsRetryPolicy(policy)) {
        reader.FieldError("retryOn", absl::StrCat("\"", policy, "\" is not a valid retry policy"));
      }
    }
  }
  retry.retry_remote_localities = reader.Bool("retryRemoteLocalities");
  retry.retry_ignore_previous_hosts = reader.Bool("retryIgnorePreviousHosts");
  retry.backoff = reader.Duration("backoff");
  if (retry.attempts == 0 &&
      (reader.Has("perTryTimeout") || !retry.retry_on.empty() || retry.retry_remote_localities)) {
    reader.FieldError("attempts", "retries are configured but attempts is 0, which disables them");
  }
  return retry;
}

bool IsGrpcStatus(absl::string_view status) {
  static constexpr absl::string_view kStatuses[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
      "UNAUTHENTICATED"};
  return absl::c_linear_search(kStatuses, status);
}

// `percentage: {value: 12.5}`, or the deprecated integer `percent`.
std::optional<double> ReadFaultPercentage(MapReader& reader) {
  std::optional<double> percentage = ReadPercentage(reader, "percentage");
  std::optional<int64_t> percent = reader.Int("percent", 0, 100);
  if (!percentage && percent) return static_cast<double>(*percent);
  return percentage;
}

model::HttpFaultInjection ReadFault(MapReader& reader) {
  model::HttpFaultInjection fault;
  if (std::optional<MapReader> delay = reader.Map("delay")) {
    model::HttpFaultInjection::Delay& out = fault.delay.emplace();
    if (delay->Has("exponentialDelay")) {
      delay->Duration("exponentialDelay");
      delay->FieldError("exponentialDelay", "not supported");
    } else if (!delay->Has("fixedDelay")) {
      delay->FieldError("fixedDelay", "required");
    }
    out.fixed_delay = delay->Duration("fixedDelay").value_or(std::chrono::milliseconds(0));
    out.percentage = ReadFaultPercentage(*delay);
  }
  if (std::optional<MapReader> abort = reader.Map("abort")) {
    model::HttpFaultInjection::Abort& out = fault.abort.emplace();
    out.http_status = static_cast<int32_t>(abort->Int("httpStatus", 200, 599).value_or(0));
    out.grpc_status = abort->String("grpcStatus").value_or("");
    if (!out.grpc_status.empty() && !IsGrpcStatus(out.grpc_status)) {
      abort->FieldError("grpcStatus", absl::StrCat("\"", out.grpc_status,
                                                   "\" is not a gRPC status name such as "
                                                   "\"UNAVAILABLE\""));
    }
    if (abort->Has("http2Error")) {
      abort->String("http2Error");
      abort->FieldError("http2Error", "not supported");
    }
    int error_types =
        abort->Has("httpStatus") + abort->Has("grpcStatus") + abort->Has("http2Error");
    if (error_types == 0) abort->Error("one of httpStatus or grpcStatus is required");
    if (error_types > 1) abort->Error("only one of httpStatus or grpcStatus may be set");
    out.percentage = ReadFaultPercentage(*abort);
  }
  if (!fault.delay && !fault.abort) reader.Error("must set an abort, a delay or both");
  return fault;
}

model::CorsPolicy ReadCorsPolicy(MapReader& reader) {
  static constexpr absl::string_view kMethods[] = {
      "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*"};
  model::CorsPolicy cors;
  for (MapReader& origin : reader.Items("allowOrigins")) {
    cors.allow_origins.push_back(ReadStringMatch(origin, MatchUse::kValue));
    if (cors.allow_origins.back().type == StringMatch::Type::kPresent ||
        cors.allow_origins.back().value.empty()) {
      origin.Error("must set a non-empty exact, prefix or regex");
    }
  }
  // Deprecated list of exact origins.
  for (std::string& origin : reader.StringList("allowOrigin")) {
    cors.allow_origins.push_back({StringMatch::Type::kExact, std::move(origin)});
  }
  cors.allow_methods = reader.StringList("allowMethods");
  for (size_t i = 0; i < cors.allow_methods.size(); ++i) {
    if (!absl::c_linear_search(kMethods, cors.allow_methods[i])) {
      reader.FieldError(absl::StrCat("allowMethods[", i, "]"),
                        absl::StrCat("\"", cors.allow_methods[i], "\" is not an HTTP method"));
    }
  }
  for (auto [key, field] : {std::pair{"allowHeaders", &cors.allow_headers},
                            std::pair{"exposeHeaders", &cors.expose_headers}}) {
    *field = reader.StringList(key);
    for (size_t i = 0; i < field->size(); ++i) {
      if ((*field)[i] != "*") {
        reader.CheckField(absl::StrCat(key, "[", i, "]"), ValidateHeaderMatchName((*field)[i]));
      }
    }
  }
  cors.max_age = reader.Duration("maxAge");
  if (cors.max_age && *cors.max_age % std::chrono::seconds(1) != std::chrono::milliseconds(0)) {
    reader.FieldError("maxAge", "must be a whole number of seconds");
  }
  cors.allow_credentials = reader.Bool("allowCredentials");
  cors.unmatched_preflights =
      reader
          .Enumerator<model::CorsPolicy::UnmatchedPreflights>(
              "unmatchedPreflights",
              {{"UNSPECIFIED", model::CorsPolicy::UnmatchedPreflights::kUnspecified},
               {"FORWARD", model::CorsPolicy::UnmatchedPreflights::kForward},
               {"IGNORE", model::CorsPolicy::UnmatchedPreflights::kIgnore}})
          .value_or(model::CorsPolicy::UnmatchedPreflights::kUnspecified);
  return cors;
}

// What a matching request gets must be unambiguous: Istio's conflict rules.
void CheckHttpRouteActions(MapReader& reader, const model::HttpRoute& route) {
  absl::string_view action = route.redirect          ? "redirect"
                             : route.direct_response ? "directResponse"
                                                     : "";
  if (action.empty()) {
    if (route.route.empty()) {
      reader.Error("one of route, redirect or directResponse is required");
    }
    return;
  }
  std::string conflict = absl::StrCat("must not be set with ", action);
  if (!route.route.empty()) reader.FieldError("route", conflict);
  if (route.fault) reader.FieldError("fault", conflict);
  if (route.rewrite) reader.FieldError("rewrite", conflict);
  if (route.redirect && route.direct_response) reader.FieldError("directResponse", conflict);
}

// The authority may be rewritten in one place only.
void CheckAuthorityRewrites(MapReader& reader, const model::HttpRoute& route) {
  int rewrites = route.rewrite && !route.rewrite->authority.empty();
  for (const auto* headers : {&route.headers.request.set, &route.headers.request.add}) {
    for (const auto& entry : *headers) rewrites += IsAuthorityHeader(entry.first);
  }
  if (rewrites > 1) reader.Error("the authority is rewritten more than once");
}

model::HttpRoute ReadHttpRoute(MapReader& reader) {
  model::HttpRoute route;
  route.name = reader.String("name").value_or("");
  for (MapReader& match : reader.Items("match")) route.match.push_back(ReadHttpMatch(match));
  for (MapReader& destination : reader.Items("route")) {
    route.route.push_back(ReadHttpRouteDestination(destination));
  }
  CheckTotalWeight(reader, route.route);
  if (std::optional<MapReader> redirect = reader.Map("redirect")) {
    route.redirect = ReadRedirect(*redirect);
  }
  if (std::optional<MapReader> response = reader.Map("directResponse")) {
    route.direct_response = ReadDirectResponse(*response);
  }
  if (reader.Has("delegate")) {
    reader.FieldError("delegate", kNoDelegation);
  }
  if (std::optional<MapReader> rewrite = reader.Map("rewrite")) {
    route.rewrite = ReadRewrite(*rewrite);
  }
  route.timeout = reader.Duration("timeout");
  if (std::optional<MapReader> retries = reader.Map("retries")) route.retries = ReadRetry(*retries);
  if (std::optional<MapReader> fault = reader.Map("fault")) route.fault = ReadFault(*fault);
  if (std::optional<MapReader> mirror = reader.Map("mirror")) {
    route.mirror = ReadDestination(*mirror);
  }
  for (MapReader& mirror : reader.Items("mirrors")) {
    route.mirrors.push_back(
        {ReadRequiredDestination(mirror), ReadPercentage(mirror, "percentage")});
  }
  if (route.mirror && !route.mirrors.empty()) {
    reader.FieldError("mirrors", "must not be set with mirror");
  }
  route.mirror_percentage = ReadPercentage(reader, "mirrorPercentage");
  // Deprecated integer form of mirrorPercentage.
  if (std::optional<int64_t> percent = reader.Int("mirrorPercent", 0, 100)) {
    if (!route.mirror_percentage) route.mirror_percentage = static_cast<double>(*percent);
  }
  if (std::optional<MapReader> cors = reader.Map("corsPolicy")) {
    route.cors_policy = ReadCorsPolicy(*cors);
  }
  if (std::optional<MapReader> headers = reader.Map("headers")) {
    route.headers = ReadHeaders(*headers);
  }
  CheckHttpRouteActions(reader, route);
  CheckAuthorityRewrites(reader, route);
  return route;
}

void ReadL4Match(MapReader& reader, model::L4MatchAttributes& match) {
  match.destination_subnets = reader.StringList("destinationSubnets");
  for (size_t i = 0; i < match.destination_subnets.size(); ++i) {
    reader.CheckField(absl::StrCat("destinationSubnets[", i, "]"),
                      ValidateIp(match.destination_subnets[i], /*allow_cidr=*/true));
  }
  match.port = reader.Port("port");
  match.source_labels = reader.StringMap("sourceLabels");
  match.gateways = reader.StringList("gateways");
  match.source_namespace = reader.String("sourceNamespace").value_or("");
  if (!match.source_namespace.empty()) {
    reader.CheckField("sourceNamespace", ValidateDnsLabel(match.source_namespace));
  }
}

std::vector<model::RouteDestination> ReadRouteDestinations(MapReader& reader) {
  std::vector<model::RouteDestination> route;
  for (MapReader& item : reader.Items("route")) {
    route.push_back({ReadRequiredDestination(item), ReadWeight(item)});
  }
  if (route.empty()) reader.FieldError("route", "required");
  CheckTotalWeight(reader, route);
  return route;
}

// An SNI host must fall under one of the VirtualService's hosts.
bool IsHostSubset(absl::string_view sni, absl::string_view host) {
  if (host == "*") return true;
  if (absl::StartsWith(host, "*")) return absl::EndsWith(sni, host.substr(1));
  return sni == host;
}

model::TlsRoute ReadTlsRoute(MapReader& reader, const std::vector<std::string>& hosts) {
  model::TlsRoute route;
  for (MapReader& item : reader.Items("match")) {
    model::TlsMatchAttributes& match = route.match.emplace_back();
    ReadL4Match(item, match);
    match.sni_hosts = item.StringList("sniHosts");
    if (match.sni_hosts.empty()) item.FieldError("sniHosts", "at least one SNI host is required");
    for (size_t i = 0; i < match.sni_hosts.size(); ++i) {
      const std::string& sni = match.sni_hosts[i];
      std::string field = absl::StrCat("sniHosts[", i, "]");
      if (absl::Status status = ValidateWildcardDomain(sni); !status.ok()) {
        item.CheckField(field, status);
      } else if (std::none_of(hosts.begin(), hosts.end(),
                              [&](const std::string& host) { return IsHostSubset(sni, host); })) {
        item.FieldError(field, absl::StrCat("\"", sni, "\" is not covered by the hosts"));
      }
    }
  }
  if (route.match.empty()) reader.FieldError("match", "a TLS route needs at least one match");
  route.route = ReadRouteDestinations(reader);
  return route;
}

model::TcpRoute ReadTcpRoute(MapReader& reader) {
  model::TcpRoute route;
  for (MapReader& item : reader.Items("match")) ReadL4Match(item, route.match.emplace_back());
  route.route = ReadRouteDestinations(reader);
  return route;
}

bool IsIpAddress(absl::string_view text) { return ValidateIp(text, false).ok(); }

}  // namespace

model::VirtualService ReadVirtualService(MapReader& object, model::ObjectMeta meta) {
  model::VirtualService vs;
  vs.meta = std::move(meta);
  MapReader spec = object.Child("spec", /*strict=*/true);

  vs.gateways = spec.StringList("gateways");
  bool bound_to_mesh = vs.gateways.empty() || absl::c_linear_search(vs.gateways, "mesh");
  vs.hosts = spec.StringList("hosts");
  absl::flat_hash_set<std::string> seen_hosts;
  for (size_t i = 0; i < vs.hosts.size(); ++i) {
    const std::string& host = vs.hosts[i];
    std::string field = absl::StrCat("hosts[", i, "]");
    if (host == "*" && bound_to_mesh) {
      spec.FieldError(field, "the wildcard host * is not allowed for the mesh");
    } else if (!IsIpAddress(host)) {
      spec.CheckField(field, ValidateWildcardDomain(host));
    }
    if (!seen_hosts.insert(host).second) spec.FieldError(field, "duplicate host");
  }

  // Without hosts, a VirtualService is a delegate, which only delegation reaches.
  if (vs.hosts.empty()) spec.FieldError("hosts", kNoDelegation);
  for (MapReader& route : spec.Items("http")) vs.http.push_back(ReadHttpRoute(route));
  for (MapReader& route : spec.Items("tls")) vs.tls.push_back(ReadTlsRoute(route, vs.hosts));
  for (MapReader& route : spec.Items("tcp")) vs.tcp.push_back(ReadTcpRoute(route));
  if (vs.http.empty() && vs.tls.empty() && vs.tcp.empty()) {
    spec.Error("one of http, tls or tcp routes is required");
  }
  vs.export_to = ReadExportTo(spec, vs.meta.namespace_);
  return vs;
}

}  // namespace meshpilot::convert
