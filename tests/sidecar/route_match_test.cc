// Virtual host and route selection, rewrites and redirects, over RouteConfigurations written
// as a control plane sends them.

#include <catch2/catch.hpp>

#include <chrono>
#include <limits>
#include <map>

#include "sidecar/config/duration.h"
#include "sidecar/config/route.h"
#include "sidecar/router/route_match.h"
#include "tests/sidecar/proto_json.h"

namespace meshpilot::sidecar {
namespace {

using testing::FromJson;
using RC = envoy::config::route::v3::RouteConfiguration;

std::shared_ptr<const config::RouteTable> Parse(const std::string& json) {
  auto table = config::ParseRouteConfiguration(FromJson<RC>(json));
  REQUIRE(table.ok());
  return *table;
}

std::string VhostFor(const config::RouteTable& table, const std::string& host) {
  const config::VirtualHost* vhost = router::SelectVirtualHost(table, host);
  return vhost ? vhost->name : "<none>";
}

const config::Route* RouteFor(const config::VirtualHost& vhost, const std::string& path,
                              std::map<std::string, std::string> headers = {}) {
  return router::SelectRoute(vhost, path,
                             [&](std::string_view name) -> std::optional<std::string_view> {
                               auto it = headers.find(std::string(name));
                               if (it == headers.end()) return std::nullopt;
                               return it->second;
                             });
}

const config::RouteTable& Domains() {
  static auto table = Parse(R"({"name": "80", "virtual_hosts": [
    {"name": "exact", "domains": ["ratings.shop.svc.cluster.local", "ratings.shop:80"]},
    {"name": "suffix-short", "domains": ["*.com"]},
    {"name": "suffix-long", "domains": ["*.example.com"]},
    {"name": "prefix", "domains": ["api.*"]},
    {"name": "any", "domains": ["*"]}]})");
  return *table;
}

TEST_CASE("vhost: exact domain wins over wildcards, case-insensitively") {
  CHECK(VhostFor(Domains(), "ratings.shop.svc.cluster.local") == "exact");
  CHECK(VhostFor(Domains(), "Ratings.Shop.SVC.cluster.local") == "exact");
}

TEST_CASE("vhost: the longest suffix wildcard wins, then prefix, then *") {
  CHECK(VhostFor(Domains(), "www.example.com") == "suffix-long");
  CHECK(VhostFor(Domains(), "foo.com") == "suffix-short");
  CHECK(VhostFor(Domains(), "api.internal") == "prefix");
  CHECK(VhostFor(Domains(), "api.example.com") == "suffix-long");  // suffix beats prefix
  CHECK(VhostFor(Domains(), "other") == "any");
  // A wildcard never matches the empty string.
  CHECK(VhostFor(Domains(), ".com") == "any");
}

TEST_CASE("vhost: Host with a port matches a domain with that port or without a port") {
  CHECK(VhostFor(Domains(), "ratings.shop:80") == "exact");
  CHECK(VhostFor(Domains(), "ratings.shop.svc.cluster.local:8080") == "exact");
  CHECK(VhostFor(Domains(), "www.example.com:443") == "suffix-long");
  CHECK(VhostFor(Domains(), "ratings.shop:81") == "any");
}

TEST_CASE("vhost: among equally good matches the virtual host listed first wins") {
  // "*.io" matches "x.io" without the port, "*:80" matches "x.io:80": both suffixes of 3.
  auto table = Parse(R"({"virtual_hosts": [
    {"name": "first", "domains": ["*.io", "dup.com"]},
    {"name": "second", "domains": ["*:80", "dup.com"]}]})");
  CHECK(VhostFor(*table, "x.io:80") == "first");
  CHECK(VhostFor(*table, "y:80") == "second");
  CHECK(VhostFor(*table, "dup.com") == "first");
}

TEST_CASE("vhost: a mesh's worth of virtual hosts, each found by its own domains") {
  std::string json = R"({"virtual_hosts": [)";
  for (int i = 0; i < 2000; ++i) {
    const std::string svc = "svc-" + std::to_string(i);
    json += (i ? "," : "") + std::string(R"({"name": ")") + svc + R"(", "domains": [")" + svc +
            R"(.ns.svc.cluster.local", ")" + svc + R"(.ns.svc.cluster.local:80", ")" + svc +
            R"(.ns", ")" + svc + R"(.ns:80", "10.0.)" + std::to_string(i / 256) + "." +
            std::to_string(i % 256) + R"("]})";
  }
  json += R"(, {"name": "allow_any", "domains": ["*"]}]})";
  auto table = Parse(json);
  CHECK(VhostFor(*table, "svc-1234.ns.svc.cluster.local") == "svc-1234");
  CHECK(VhostFor(*table, "SVC-7.ns:80") == "svc-7");
  CHECK(VhostFor(*table, "svc-1999.ns:8080") == "svc-1999");  // the port-less domain
  CHECK(VhostFor(*table, "10.0.3.1:80") == "svc-769");
  CHECK(VhostFor(*table, "svc-2000.ns") == "allow_any");
}

TEST_CASE("vhost: no match without a catch-all") {
  auto table = Parse(R"({"virtual_hosts": [{"name": "a", "domains": ["a.com"]}]})");
  CHECK(router::SelectVirtualHost(*table, "b.com") == nullptr);
}

TEST_CASE("route: prefix, exact path, path-separated prefix and regex, first match wins") {
  auto table = Parse(R"({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
    {"name": "exact", "match": {"path": "/api"}, "route": {"cluster": "c"}},
    {"name": "separated", "match": {"path_separated_prefix": "/api"}, "route": {"cluster": "c"}},
    {"name": "regex", "match": {"safe_regex": {"regex": "/v[0-9]+/items"}}, "route": {"cluster": "c"}},
    {"name": "nocase", "match": {"prefix": "/CaSe", "case_sensitive": false}, "route": {"cluster": "c"}},
    {"name": "prefix", "match": {"prefix": "/"}, "route": {"cluster": "c"}}]}]})");
  const auto& vhost = table->virtual_hosts[0];
  CHECK(RouteFor(vhost, "/api")->name == "exact");
  CHECK(RouteFor(vhost, "/api?x=1")->name == "exact");  // the query is not part of the path
  CHECK(RouteFor(vhost, "/api/users")->name == "separated");
  CHECK(RouteFor(vhost, "/apix")->name == "prefix");
  CHECK(RouteFor(vhost, "/v2/items")->name == "regex");
  CHECK(RouteFor(vhost, "/v2/items/1")->name == "prefix");  // regex must match the whole path
  CHECK(RouteFor(vhost, "/case/x")->name == "nocase");
}

TEST_CASE("route: header and query parameter matchers") {
  auto table = Parse(R"({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
    {"name": "canary", "match": {"prefix": "/", "headers": [
        {"name": "x-user", "string_match": {"exact": "jason"}},
        {"name": "x-debug", "present_match": true}]}, "route": {"cluster": "c"}},
    {"name": "not-mobile", "match": {"prefix": "/", "headers": [
        {"name": "user-agent", "string_match": {"contains": "Mobile"}, "invert_match": true}]},
     "route": {"cluster": "c"}, "request_headers_to_add": []},
    {"name": "query", "match": {"prefix": "/", "query_parameters": [
        {"name": "v", "string_match": {"prefix": "2"}}, {"name": "flag", "present_match": true}]},
     "route": {"cluster": "c"}},
    {"name": "method", "match": {"prefix": "/", "headers": [
        {"name": ":method", "string_match": {"exact": "POST"}}]}, "route": {"cluster": "c"}}]}]})");
  const auto& vhost = table->virtual_hosts[0];
  CHECK(RouteFor(vhost, "/", {{"x-user", "jason"}, {"x-debug", "1"}})->name == "canary");
  CHECK(RouteFor(vhost, "/", {{"x-user", "jason"}, {"user-agent", "curl"}})->name == "not-mobile");
  CHECK(RouteFor(vhost, "/?v=2.1&flag", {{"user-agent", "Mobile"}})->name == "query");
  CHECK(RouteFor(vhost, "/?v=1&flag", {{"user-agent", "Mobile"}, {":method", "POST"}})->name ==
        "method");
  CHECK(RouteFor(vhost, "/?v=1&flag", {{"user-agent", "Mobile"}, {":method", "GET"}}) == nullptr);
}

TEST_CASE("route: weighted clusters split by weight") {
  auto table = Parse(R"({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
    {"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
       {"name": "v1", "weight": 75}, {"name": "v2", "weight": 25}]}}}]}]})");
  const auto& action = std::get<config::RouteAction>(table->virtual_hosts[0].routes[0].action);
  std::map<std::string, int> counts;
  for (uint64_t r = 0; r < 100; ++r) {
    counts[router::PickWeighted(action.weighted, action.total_weight, r).name]++;
  }
  CHECK(counts["v1"] == 75);
  CHECK(counts["v2"] == 25);
}

TEST_CASE("route: prefix and regex rewrites keep the query") {
  auto table = Parse(R"({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
    {"match": {"prefix": "/old/"}, "route": {"cluster": "c", "prefix_rewrite": "/new/"}},
    {"match": {"prefix": "/r/"}, "route": {"cluster": "c",
       "regex_rewrite": {"pattern": {"regex": "^/r/(\\w+)$"}, "substitution": "/\\1/x"}}}]}]})");
  const auto& routes = table->virtual_hosts[0].routes;
  CHECK(router::RewritePath(routes[0].match, std::get<config::RouteAction>(routes[0].action),
                            "/old/a/b?q=1") == "/new/a/b?q=1");
  CHECK(router::RewritePath(routes[1].match, std::get<config::RouteAction>(routes[1].action),
                            "/r/abc?z") == "/abc/x?z");
}

TEST_CASE("route: prefix_rewrite on exact and regex matches replaces the whole path") {
  auto table = Parse(R"({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
    {"match": {"path": "/old"}, "route": {"cluster": "c", "prefix_rewrite": "/new"}},
    {"match": {"path": "/Old", "case_sensitive": false},
     "route": {"cluster": "c", "prefix_rewrite": "/new"}},
    {"match": {"safe_regex": {"regex": "/r/[a-z]+"}},
     "route": {"cluster": "c", "prefix_rewrite": "/x"}},
    {"match": {"path": "/moved"}, "redirect": {"prefix_rewrite": "/there"}}]}]})");
  const auto& routes = table->virtual_hosts[0].routes;
  auto rewrite = [&](int i, std::string_view path) {
    return router::RewritePath(routes[i].match, std::get<config::RouteAction>(routes[i].action),
                               path);
  };
  CHECK(rewrite(0, "/old") == "/new");
  CHECK(rewrite(0, "/old?q=1") == "/new?q=1");
  CHECK(rewrite(1, "/OLD?q") == "/new?q");
  CHECK(rewrite(2, "/r/abc?q=1") == "/x?q=1");
  CHECK(router::RedirectLocation(std::get<config::Redirect>(routes[3].action), routes[3].match,
                                 "http", "h", "/moved?q") == "http://h/there?q");
}

TEST_CASE("route: redirect locations") {
  auto table = Parse(R"({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
    {"match": {"prefix": "/a"}, "redirect": {"https_redirect": true}},
    {"match": {"prefix": "/b"}, "redirect": {"host_redirect": "other", "path_redirect": "/x",
                                             "response_code": "FOUND", "strip_query": true}},
    {"match": {"prefix": "/c/"}, "redirect": {"prefix_rewrite": "/d/", "port_redirect": 8443}}]}]})");
  const auto& routes = table->virtual_hosts[0].routes;
  const auto& a = std::get<config::Redirect>(routes[0].action);
  const auto& b = std::get<config::Redirect>(routes[1].action);
  const auto& c = std::get<config::Redirect>(routes[2].action);
  CHECK(router::RedirectLocation(a, routes[0].match, "http", "h:8080", "/a?q") == "https://h/a?q");
  CHECK(b.status == 302);
  CHECK(router::RedirectLocation(b, routes[1].match, "http", "h", "/b?q") == "http://other/x");
  CHECK(router::RedirectLocation(c, routes[2].match, "http", "h", "/c/1") == "http://h:8443/d/1");
}

TEST_CASE("route config: errors name the field") {
  auto bad_regex = config::ParseRouteConfiguration(FromJson<RC>(R"({"virtual_hosts": [
    {"name": "v", "domains": ["*"], "routes": [
      {"match": {"prefix": "/"}, "route": {"cluster": "c"}},
      {"match": {"safe_regex": {"regex": "(unclosed"}}, "route": {"cluster": "c"}}]}]})"));
  REQUIRE_FALSE(bad_regex.ok());
  CHECK(std::string(bad_regex.status().message())
            .starts_with("virtual_hosts[0].routes[1].match.safe_regex.regex: invalid regex"));
  auto no_domains = config::ParseRouteConfiguration(
      FromJson<RC>(R"({"virtual_hosts": [{"name": "v"}]})"));
  REQUIRE_FALSE(no_domains.ok());
  CHECK(no_domains.status().message() == "virtual_hosts[0].domains: must not be empty");
  auto zero_weights = config::ParseRouteConfiguration(FromJson<RC>(R"({"virtual_hosts": [
    {"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {
      "weighted_clusters": {"clusters": [{"name": "a", "weight": 0}]}}}]}]})"));
  REQUIRE_FALSE(zero_weights.ok());
  CHECK(zero_weights.status().message() ==
        "virtual_hosts[0].routes[0].route.weighted_clusters: needs at least one cluster with "
        "weight > 0");
}

TEST_CASE("route config: per-route fault injection as meshpilot sends it") {
  auto table = Parse(R"({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
    {"match": {"prefix": "/"}, "route": {"cluster": "c"}, "typed_per_filter_config": {
      "envoy.filters.http.fault": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
        "delay": {"fixed_delay": "0.5s", "percentage": {"numerator": 10, "denominator": "HUNDRED"}},
        "abort": {"http_status": 503, "percentage": {"numerator": 25, "denominator": "TEN_THOUSAND"}}},
      "envoy.filters.http.cors": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"}}}]}]})");
  const auto& fault = table->virtual_hosts[0].routes[0].fault;
  REQUIRE(fault);
  CHECK(*fault->delay == std::chrono::milliseconds(500));
  CHECK(fault->delay_per_million == 100000);
  CHECK(*fault->abort_http_status == 503);
  CHECK(fault->abort_per_million == 2500);
  auto unknown = config::ParseRouteConfiguration(FromJson<RC>(R"({"virtual_hosts": [{"name": "v",
    "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c"},
    "typed_per_filter_config": {"envoy.filters.http.rbac": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}}}]}]})"));
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.status().message() == "virtual_hosts[0].routes[0].typed_per_filter_config["
                                      "envoy.filters.http.rbac]: unsupported filter config");
}

TEST_CASE("route: hash policies from header, cookie, query and source ip") {
  auto table = Parse(R"({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
    {"match": {"prefix": "/"}, "route": {"cluster": "c", "hash_policy": [
      {"header": {"header_name": "X-User"}, "terminal": true},
      {"cookie": {"name": "session"}},
      {"query_parameter": {"name": "id"}},
      {"connection_properties": {"source_ip": true}}]}}]}]})");
  const auto& policies = std::get<config::RouteAction>(table->virtual_hosts[0].routes[0].action).hash_policies;
  REQUIRE(policies.size() == 4);
  auto hash = [&](std::map<std::string, std::string> headers, const std::string& path,
                  const std::string& ip) {
    std::vector<std::string> set_cookies;
    auto h = router::RequestHash(policies, path,
                                 [&](std::string_view name) -> std::optional<std::string_view> {
                                   auto it = headers.find(std::string(name));
                                   if (it == headers.end()) return std::nullopt;
                                   return it->second;
                                 },
                                 ip, "conn", set_cookies);
    CHECK(set_cookies.empty());  // no ttl: the cookie is only read
    return h;
  };
  // A terminal header wins alone: the rest does not change the hash.
  CHECK(hash({{"x-user", "a"}}, "/?id=1", "10.0.0.1") == hash({{"x-user", "a"}}, "/?id=2", "10.0.0.2"));
  CHECK(hash({{"x-user", "a"}}, "/", "1.1.1.1") != hash({{"x-user", "b"}}, "/", "1.1.1.1"));
  // Without it, cookie, query and source combine.
  CHECK(hash({{"cookie", "a=1; session=s1"}}, "/?id=1", "10.0.0.1") !=
        hash({{"cookie", "a=1; session=s2"}}, "/?id=1", "10.0.0.1"));
  CHECK(hash({}, "/?id=1", "10.0.0.1") != hash({}, "/?id=2", "10.0.0.1"));
  CHECK(hash({}, "/", "10.0.0.1") == hash({}, "/", "10.0.0.1"));
}

TEST_CASE("route: a cookie hash policy with a ttl generates the missing cookie") {
  auto table = Parse(R"({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
    {"match": {"prefix": "/a"}, "route": {"cluster": "c", "hash_policy": [
      {"cookie": {"name": "user", "ttl": "60s", "path": "/a"}}]}},
    {"match": {"prefix": "/b"}, "route": {"cluster": "c", "hash_policy": [
      {"cookie": {"name": "user", "ttl": "0s"}}]}}]}]})");
  const auto& routes = table->virtual_hosts[0].routes;
  auto hash = [&](size_t route, std::optional<std::string> cookie, const std::string& connection,
                  std::vector<std::string>& set_cookies) {
    return router::RequestHash(
        std::get<config::RouteAction>(routes[route].action).hash_policies, "/",
        [&](std::string_view name) -> std::optional<std::string_view> {
          if (name == "cookie" && cookie) return *cookie;
          return std::nullopt;
        },
        "10.0.0.1", connection, set_cookies);
  };
  std::vector<std::string> set_cookies;
  const auto generated = hash(0, std::nullopt, "10.0.0.1:5000127.0.0.1:80", set_cookies);
  REQUIRE(set_cookies.size() == 1);
  const std::string& header = set_cookies[0];
  REQUIRE(header.starts_with("user=\""));
  const std::string value = header.substr(6, header.find('"', 6) - 6);
  CHECK(value.size() == 16);
  CHECK(header == "user=\"" + value + "\"; Max-Age=60; Path=/a; HttpOnly");
  // The request that carries it (quoted or not) hashes as the one that got it, and sets none.
  std::vector<std::string> none;
  CHECK(hash(0, "user=\"" + value + "\"", "other", none) == generated);
  CHECK(hash(0, "x=1; user=" + value, "other", none) == generated);
  CHECK(none.empty());
  // The same connection gets the same cookie; another one another.
  std::vector<std::string> again, other;
  hash(0, std::nullopt, "10.0.0.1:5000127.0.0.1:80", again);
  hash(0, std::nullopt, "10.0.0.1:5001127.0.0.1:80", other);
  CHECK(again == set_cookies);
  CHECK(other != set_cookies);
  // ttl 0: a session cookie, without Max-Age (and without Path when none is given).
  std::vector<std::string> session;
  hash(1, std::nullopt, "c", session);
  REQUIRE(session.size() == 1);
  CHECK(session[0].ends_with("\"; HttpOnly"));
  CHECK(session[0].find("Max-Age") == std::string::npos);
}

TEST_CASE("route config: Envoy's default route timeout is 15s, 0s disables it") {
  auto table = Parse(R"({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
    {"match": {"prefix": "/a"}, "route": {"cluster": "c"}},
    {"match": {"prefix": "/b"}, "route": {"cluster": "c", "timeout": "0s"}},
    {"match": {"prefix": "/c"}, "route": {"cluster": "c", "timeout": "1.5s"}}]}]})");
  const auto& routes = table->virtual_hosts[0].routes;
  CHECK(std::get<config::RouteAction>(routes[0].action).timeout == std::chrono::seconds(15));
  CHECK(std::get<config::RouteAction>(routes[1].action).timeout.count() == 0);
  CHECK(std::get<config::RouteAction>(routes[2].action).timeout == std::chrono::milliseconds(1500));
}

TEST_CASE("route config: a timeout beyond steady_clock's range is capped, so deadlines hold") {
  // 10,000 years is protobuf's largest Duration; steady_clock's nanoseconds end at ~292 years.
  auto table = Parse(R"({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
    {"match": {"prefix": "/"}, "route": {"cluster": "c", "timeout": "315576000000s",
      "max_stream_duration": {"max_stream_duration": "315576000000s",
                              "grpc_timeout_header_max": "9300000000s"},
      "retry_policy": {"per_try_timeout": "315576000000s"}}}]}]})");
  const auto& action = std::get<config::RouteAction>(table->virtual_hosts[0].routes[0].action);
  CHECK(action.timeout == config::kMaxDuration);
  CHECK(action.stream_timeouts.max_stream_duration == config::kMaxDuration);
  CHECK(*action.stream_timeouts.grpc_timeout_header_max == config::kMaxDuration);
  CHECK(action.retry->per_try_timeout == config::kMaxDuration);
  const auto now = std::chrono::steady_clock::now();
  CHECK(now + action.timeout > now);  // "effectively never", not a deadline in the past
  // Below the cap, durations are exact to the millisecond.
  envoy::config::route::v3::RouteConfiguration proto = FromJson<RC>(R"({"virtual_hosts": [
    {"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"},
      "route": {"cluster": "c", "timeout": "3153599999.25s"}}]}]})");
  auto exact = config::ParseRouteConfiguration(proto);
  REQUIRE(exact.ok());
  CHECK(std::get<config::RouteAction>((*exact)->virtual_hosts[0].routes[0].action).timeout ==
        std::chrono::milliseconds(3153599999250));
  // On the wire a Duration is not validated: seconds near INT64_MAX are capped too.
  proto.mutable_virtual_hosts(0)->mutable_routes(0)->mutable_route()->mutable_timeout()->set_seconds(
      std::numeric_limits<int64_t>::max());
  auto wire = config::ParseRouteConfiguration(proto);
  REQUIRE(wire.ok());
  CHECK(std::get<config::RouteAction>((*wire)->virtual_hosts[0].routes[0].action).timeout ==
        config::kMaxDuration);
}

}  // namespace
}  // namespace meshpilot::sidecar
