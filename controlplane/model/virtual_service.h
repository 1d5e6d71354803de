#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "controlplane/model/object_meta.h"

namespace meshpilot::model {

// Istio's StringMatch. A match with none of exact/prefix/regex set is kPresent: for headers
// and query parameters Istio then matches on presence (absence, under withoutHeaders).
struct StringMatch {
  enum class Type { kExact, kPrefix, kRegex, kPresent };
  Type type = Type::kPresent;
  std::string value;
};

// Where traffic goes: a service host, optionally one DestinationRule subset and port.
struct Destination {
  std::string host;
  std::string subset;
  std::optional<uint32_t> port;
};

struct HeaderOperations {
  std::map<std::string, std::string> set;
  std::map<std::string, std::string> add;
  std::vector<std::string> remove;
};

struct Headers {
  HeaderOperations request;
  HeaderOperations response;
};

struct HttpMatchRequest {
  std::string name;
  std::optional<StringMatch> uri;
  std::optional<StringMatch> scheme;
  std::optional<StringMatch> method;
  std::optional<StringMatch> authority;
  std::map<std::string, StringMatch> headers;
  std::map<std::string, StringMatch> query_params;
  std::map<std::string, StringMatch> without_headers;
  std::optional<uint32_t> port;
  std::map<std::string, std::string> source_labels;
  std::vector<std::string> gateways;
  std::string source_namespace;
  bool ignore_uri_case = false;
  std::string stat_prefix;
};

struct HttpRouteDestination {
  Destination destination;
  // Relative: a destination gets weight / (sum of weights). A lone destination gets all
  // traffic whatever its weight, as in Istio.
  int32_t weight = 0;
  Headers headers;
};

struct HttpRedirect {
  enum class DerivePort { kFromProtocolDefault, kFromRequestPort };
  std::string uri;
  std::string authority;
  std::optional<uint32_t> port;
  std::optional<DerivePort> derive_port;
  std::string scheme;
  uint32_t redirect_code = 301;  // Istio's default when unset
};

struct HttpDirectResponse {
  uint32_t status = 0;
  std::optional<std::string> body;  // `body.string`, or `body.bytes` base64-decoded
};

struct RegexRewrite {
  std::string match;
  std::string rewrite;
};

struct HttpRewrite {
  std::string uri;
  std::string authority;
  std::optional<RegexRewrite> uri_regex_rewrite;
};

struct HttpRetry {
  int32_t attempts = 0;
  std::optional<std::chrono::milliseconds> per_try_timeout;
  std::string retry_on;  // comma separated Envoy retry policies and status codes
  std::optional<bool> retry_remote_localities;
  std::optional<bool> retry_ignore_previous_hosts;
  std::optional<std::chrono::milliseconds> backoff;
};

struct HttpFaultInjection {
  struct Delay {
    std::chrono::milliseconds fixed_delay{0};
    std::optional<double> percentage;  // unset: every request
  };
  struct Abort {
    int32_t http_status = 0;  // exactly one of http_status and grpc_status is set
    std::string grpc_status;  // "UNAVAILABLE", ...
    std::optional<double> percentage;  // unset: every request
  };
  std::optional<Delay> delay;
  std::optional<Abort> abort;
};

struct HttpMirrorPolicy {
  Destination destination;
  std::optional<double> percentage;  // unset: every request
};

struct CorsPolicy {
  enum class UnmatchedPreflights { kUnspecified, kForward, kIgnore };
  std::vector<StringMatch> allow_origins;
  std::vector<std::string> allow_methods;
  std::vector<std::string> allow_headers;
  std::vector<std::string> expose_headers;
  std::optional<std::chrono::milliseconds> max_age;
  std::optional<bool> allow_credentials;
  UnmatchedPreflights unmatched_preflights = UnmatchedPreflights::kUnspecified;
};

// One http[] rule. Exactly one of route, redirect and direct_response decides what happens to
// a matching request.
struct HttpRoute {
  std::string name;
  std::vector<HttpMatchRequest> match;  // empty: matches every request
  std::vector<HttpRouteDestination> route;
  std::optional<HttpRedirect> redirect;
  std::optional<HttpDirectResponse> direct_response;
  std::optional<HttpRewrite> rewrite;
  std::optional<std::chrono::milliseconds> timeout;
  std::optional<HttpRetry> retries;
  std::optional<HttpFaultInjection> fault;
  std::optional<Destination> mirror;
  std::vector<HttpMirrorPolicy> mirrors;
  std::optional<double> mirror_percentage;  // for `mirror`; unset: every request
  std::optional<CorsPolicy> cors_policy;
  Headers headers;
};

// A tcp[] match; also the fields tls[] matches share.
struct L4MatchAttributes {
  std::vector<std::string> destination_subnets;
  std::optional<uint32_t> port;
  std::map<std::string, std::string> source_labels;
  std::vector<std::string> gateways;
  std::string source_namespace;
};

struct TlsMatchAttributes : L4MatchAttributes {
  std::vector<std::string> sni_hosts;
};

struct RouteDestination {
  Destination destination;
  int32_t weight = 0;  // relative, as in HttpRouteDestination
};

struct TcpRoute {
  std::vector<L4MatchAttributes> match;
  std::vector<RouteDestination> route;
};

struct TlsRoute {
  std::vector<TlsMatchAttributes> match;
  std::vector<RouteDestination> route;
};

// networking.istio.io VirtualService (v1, v1beta1 and v1alpha3 share this shape).
struct VirtualService {
  ObjectMeta meta;
  std::vector<std::string> hosts;
  std::vector<std::string> gateways;
  std::vector<HttpRoute> http;
  std::vector<TlsRoute> tls;
  std::vector<TcpRoute> tcp;
  std::vector<std::string> export_to;
};

}  // namespace meshpilot::model
