#pragma once

// Envoy's request-to-route decisions as pure functions over the parsed RouteTable: virtual
// host by Host, route by path/headers/query, weighted cluster pick, path rewrite, redirects.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "sidecar/config/route.h"

namespace meshpilot::sidecar::router {

// Looks a request header up by lower-case name (":authority", ":path", ":method" included).
using HeaderGetter = absl::FunctionRef<std::optional<std::string_view>(std::string_view)>;

// The path of a :path, without its query string and fragment.
std::string_view PathOnly(std::string_view path_and_query);

// Envoy's HeaderMatcher: a missing header matches only a present_match of false (or an empty
// value when treat_missing_as_empty); invert flips the result.
bool HeaderMatches(const config::HeaderMatch& match, HeaderGetter headers);

// Precedence as in Envoy: exact domain, then the longest `*suffix`, then the longest `prefix*`,
// then `*`. The Host is tried as sent and without its port; the better match wins.
const config::VirtualHost* SelectVirtualHost(const config::RouteTable& table, std::string_view host);

// The first route whose match accepts the request.
const config::Route* SelectRoute(const config::VirtualHost& vhost, std::string_view path_and_query,
                                 HeaderGetter headers);

// `random` is uniform over uint64_t.
const config::WeightedCluster& PickWeighted(const std::vector<config::WeightedCluster>& clusters,
                                            uint64_t total_weight, uint64_t random);

// The request's hash for consistent hashing from the route's hash policies (Envoy combines
// them in order, stopping after a terminal one that produced a value); none if no policy
// produced one. A cookie policy with a ttl whose cookie the request lacks generates it, as
// Envoy: its value is the hex hash of `connection_key` (the downstream connection's addresses,
// so a connection's requests get the same one), the hash uses it, and its Set-Cookie header
// value (`NAME="VALUE"; Max-Age=TTL; Path=PATH; HttpOnly`) goes to `set_cookies` for the
// response.
std::optional<uint64_t> RequestHash(const std::vector<config::HashPolicy>& policies,
                                    std::string_view path_and_query, HeaderGetter headers,
                                    std::string_view source_ip, std::string_view connection_key,
                                    std::vector<std::string>& set_cookies);

// The :path sent upstream after prefix_rewrite / regex_rewrite (query string kept).
std::string RewritePath(const config::RouteMatch& match, const config::RouteAction& action,
                        std::string_view path_and_query);

// The Location of a redirect for a request with this scheme, Host and :path.
std::string RedirectLocation(const config::Redirect& redirect, const config::RouteMatch& match,
                             std::string_view scheme, std::string_view host,
                             std::string_view path_and_query);

}  // namespace meshpilot::sidecar::router
