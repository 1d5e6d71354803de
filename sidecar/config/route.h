#pragma once

// A RouteConfiguration parsed into plain, compiled structs (regexes compiled once), so the data
// path never touches protos. Parsing validates and reports the field path of the first error.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/status/statusor.h"
#include "envoy/config/core/v3/base.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "google/protobuf/repeated_field.h"
#include "sidecar/config/string_match.h"

namespace meshpilot::sidecar::config {

// A piece of a header value with Envoy's %COMMAND% substitutions: literal text, or a command
// evaluated per request.
struct HeaderValuePart {
  enum class Kind {
    kLiteral,
    kDownstreamRemoteAddress,             // %DOWNSTREAM_REMOTE_ADDRESS% (ip:port)
    kDownstreamRemoteAddressWithoutPort,  // %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%
    kDownstreamRemotePort,                // %DOWNSTREAM_REMOTE_PORT%
    kDownstreamLocalAddress,              // %DOWNSTREAM_LOCAL_ADDRESS% (the original destination)
    kDownstreamLocalAddressWithoutPort,   // %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%
    kDownstreamLocalPort,                 // %DOWNSTREAM_LOCAL_PORT%
    kUpstreamCluster,                     // %UPSTREAM_CLUSTER%
    kProtocol,                            // %PROTOCOL%: HTTP/1.1, HTTP/2
    kHostname,                            // %HOSTNAME%
    kStartTime,                           // %START_TIME%: 2006-01-02T15:04:05.000Z
    kRequestHeader,                       // %REQ(NAME)%, %REQ(NAME):MAX%
  };
  Kind kind = Kind::kLiteral;
  std::string text;  // the literal, or the request header's name (lower case)
  size_t max_length = std::string::npos;
};

struct HeaderToAdd {
  enum class Action { kAppendIfExistsOrAdd, kAddIfAbsent, kOverwriteIfExistsOrAdd, kOverwriteIfExists };
  std::string key;
  std::string value;  // the value, when it has no command
  Action action = Action::kAppendIfExistsOrAdd;
  std::vector<HeaderValuePart> format = {};  // the value's parts, when it has commands
};

struct HeaderMutations {
  std::vector<HeaderToAdd> add;
  std::vector<std::string> remove;
  bool empty() const { return add.empty() && remove.empty(); }
};

// Envoy's header value format: `%%` is a literal `%`, `%COMMAND%` one of HeaderValuePart's
// commands; anything else after a `%` is an error naming field (Envoy rejects it too).
absl::StatusOr<std::vector<HeaderValuePart>> ParseHeaderValueFormat(std::string_view value,
                                                                   const std::string& field);

struct HeaderMatch {
  std::string name;  // lower case
  // Unset: present_match (the header must exist, or must not when present_match is false).
  std::optional<StringMatch> value;
  bool present = true;
  bool invert = false;
  bool treat_missing_as_empty = false;
};

struct QueryParamMatch {
  std::string name;
  std::optional<StringMatch> value;  // unset: the parameter must be present
};

struct RouteMatch {
  enum class PathKind { kPrefix, kPath, kRegex, kPathSeparatedPrefix };
  PathKind kind = PathKind::kPrefix;
  std::string path;
  std::shared_ptr<const re2::RE2> regex;
  bool case_sensitive = true;
  std::vector<HeaderMatch> headers;
  std::vector<QueryParamMatch> query_params;
};

struct RetryPolicy {
  bool on_5xx = false;
  bool on_gateway_error = false;
  bool on_connect_failure = false;
  bool on_reset = false;
  bool on_retriable_4xx = false;
  bool on_retriable_status_codes = false;
  bool on_refused_stream = false;  // HTTP/2 REFUSED_STREAM
  // gRPC conditions, read from grpc-status in response headers or trailers.
  bool on_grpc_cancelled = false;
  bool on_grpc_deadline_exceeded = false;
  bool on_grpc_internal = false;
  bool on_grpc_resource_exhausted = false;
  bool on_grpc_unavailable = false;
  uint32_t num_retries = 1;
  std::chrono::milliseconds per_try_timeout{0};  // 0: none
  std::vector<uint32_t> retriable_status_codes;
  std::chrono::milliseconds base_interval{25};
  std::chrono::milliseconds max_interval{250};
  bool avoid_previous_hosts = false;

  bool any_grpc() const {
    return on_grpc_cancelled || on_grpc_deadline_exceeded || on_grpc_internal ||
           on_grpc_resource_exhausted || on_grpc_unavailable;
  }
};

struct WeightedCluster {
  std::string name;
  uint32_t weight = 0;
  std::string host_rewrite;  // host_rewrite_literal: this destination's :authority
  HeaderMutations request_headers;
  HeaderMutations response_headers;
};

// How a request picks its place on a consistent-hash ring (RouteAction.hash_policy).
struct HashPolicy {
  enum class Kind { kHeader, kCookie, kSourceIp, kQueryParameter };
  Kind kind = Kind::kHeader;
  std::string name;  // header (lower case), cookie or query parameter name
  bool terminal = false;
  // Cookie with a ttl: generated when the request lacks it (0 s: a session cookie).
  std::optional<std::chrono::seconds> cookie_ttl;
  std::string cookie_path;
};

// RouteAction.request_mirror_policies: a copy of the request goes to `cluster` for this
// fraction of requests.
struct MirrorPolicy {
  std::string cluster;
  uint32_t per_million = 1000000;
  bool append_shadow_suffix = true;  // unless disable_shadow_host_suffix_append
};

// RouteAction.max_stream_duration (Envoy's "new" timeouts, kept apart from the route timeout)
// or, without it, the deprecated max_grpc_timeout / grpc_timeout_offset (which replace the
// route timeout of gRPC requests).
struct StreamTimeouts {
  // Unset: the connection manager's max_stream_duration; 0: none.
  std::optional<std::chrono::milliseconds> max_stream_duration;
  // Set: a request's grpc-timeout header is honoured, capped at this (0: uncapped).
  std::optional<std::chrono::milliseconds> grpc_timeout_header_max;
  std::chrono::milliseconds grpc_timeout_header_offset{0};
  bool legacy = false;  // from max_grpc_timeout: the gRPC timeout is the route timeout
};

struct RouteAction {
  std::string cluster;                     // or:
  std::vector<WeightedCluster> weighted;   // non-empty: pick by weight
  uint64_t total_weight = 0;
  std::string prefix_rewrite;
  std::shared_ptr<const re2::RE2> regex_rewrite;
  std::string regex_substitution;
  std::string host_rewrite;
  bool auto_host_rewrite = false;  // :authority becomes the upstream host's hostname
  std::chrono::milliseconds timeout{15000};  // Envoy's default; 0: none
  StreamTimeouts stream_timeouts;
  std::optional<RetryPolicy> retry;
  std::vector<HashPolicy> hash_policies;
  std::vector<MirrorPolicy> mirrors;
  // upgrade_configs: per upgrade type (lower case), enabled or not on this route, over the
  // HTTP connection manager's (HttpChain::upgrades).
  std::map<std::string, bool> upgrades;
};

struct Redirect {
  std::string scheme;  // empty: keep
  std::string host;
  uint32_t port = 0;
  std::string path;
  std::string prefix_rewrite;
  bool strip_query = false;
  unsigned status = 301;
};

struct DirectResponse {
  unsigned status = 200;
  std::string body;
};

// The fault filter's config (typed_per_filter_config "envoy.filters.http.fault", the most
// specific of route, virtual host, route configuration).
struct Fault {
  std::optional<std::chrono::milliseconds> delay;
  uint32_t delay_per_million = 0;
  std::optional<unsigned> abort_http_status;
  std::optional<uint32_t> abort_grpc_status;
  uint32_t abort_per_million = 0;
};

// The CORS filter's policy (typed_per_filter_config "envoy.filters.http.cors" of the route,
// else of its virtual host, else of the route configuration: the most specific wins whole).
struct Cors {
  std::vector<StringMatch> allow_origins;
  std::string allow_methods;
  std::string allow_headers;
  std::string expose_headers;
  std::string max_age;
  bool allow_credentials = false;
  bool allow_private_network_access = false;
  bool forward_not_matching_preflights = true;
  uint32_t enabled_per_million = 1000000;  // filter_enabled
};

struct Route {
  std::string name;
  RouteMatch match;
  std::optional<Fault> fault;
  std::optional<Cors> cors;
  std::variant<RouteAction, Redirect, DirectResponse> action;
  HeaderMutations request_headers;
  HeaderMutations response_headers;
};

struct VirtualHost {
  std::string name;
  std::vector<std::string> domains;  // lower case
  std::vector<Route> routes;
  HeaderMutations request_headers;
  HeaderMutations response_headers;
  std::optional<RetryPolicy> retry;
};

// Where a host name finds its virtual host, built once per route table (as Envoy's
// RouteMatcher): exact domains in a hash table, then wildcard patterns grouped by length,
// longest first, so a request costs a few lookups however many virtual hosts a mesh has.
// Values are indexes into RouteTable::virtual_hosts; the first virtual host keeps a domain
// that is listed twice.
struct VirtualHostIndex {
  using ByPattern = absl::flat_hash_map<std::string, size_t>;
  ByPattern exact;
  std::vector<std::pair<size_t, ByPattern>> suffixes;  // "*.example.com" under ".example.com"
  std::vector<std::pair<size_t, ByPattern>> prefixes;  // "api.*" under "api."
  std::optional<size_t> any;                           // "*"

  explicit VirtualHostIndex(const std::vector<VirtualHost>& virtual_hosts);
  VirtualHostIndex() = default;
};

struct RouteTable {
  std::string name;
  std::vector<VirtualHost> virtual_hosts;
  VirtualHostIndex domains;  // of virtual_hosts, built by ParseRouteConfiguration
  HeaderMutations request_headers;
  HeaderMutations response_headers;
};

absl::StatusOr<std::shared_ptr<const RouteTable>> ParseRouteConfiguration(
    const envoy::config::route::v3::RouteConfiguration& proto);

// One upgrade_configs entry, the HTTP connection manager's or a route's (`field` names it):
// its type in lower case, and whether it is enabled (unset: yes).
template <class UpgradeConfig>
absl::StatusOr<std::pair<std::string, bool>> ParseUpgradeConfig(const UpgradeConfig& proto,
                                                                 const std::string& field) {
  if (proto.upgrade_type().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".upgrade_type: empty"));
  }
  return std::pair(absl::AsciiStrToLower(proto.upgrade_type()),
                   !proto.has_enabled() || proto.enabled().value());
}

absl::StatusOr<RetryPolicy> ParseRetryPolicy(const envoy::config::route::v3::RetryPolicy& proto,
                                             const std::string& field);

absl::StatusOr<HeaderMatch> ParseHeaderMatcher(const envoy::config::route::v3::HeaderMatcher& proto,
                                               const std::string& field);

absl::StatusOr<HeaderMutations> ParseHeaderMutations(
    const google::protobuf::RepeatedPtrField<envoy::config::core::v3::HeaderValueOption>& add,
    const google::protobuf::RepeatedPtrField<std::string>& remove, const std::string& field);

}  // namespace meshpilot::sidecar::config
