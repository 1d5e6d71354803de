// The CORS filter's decisions on a route's policy, and how mirror policies and shadow hosts are
// read.

#include <catch2/catch.hpp>

#include "sidecar/config/route.h"
#include "sidecar/router/cors.h"
#include "sidecar/router/headers.h"
#include "tests/sidecar/proto_json.h"

namespace meshpilot::sidecar {
namespace {

using testing::FromJson;

// One route with the given CorsPolicy JSON (the fields inside typed_per_filter_config).
absl::StatusOr<std::shared_ptr<const config::RouteTable>> RoutesWithCors(const std::string& cors) {
  return config::ParseRouteConfiguration(FromJson<envoy::config::route::v3::RouteConfiguration>(
      R"({"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{
          "match": {"prefix": "/"}, "route": {"cluster": "c"},
          "typed_per_filter_config": {"envoy.filters.http.cors": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",)" +
      cors + "}}}]}]}"));
}

// The policy meshpilot writes for the golden VirtualService vs_match_headers_rewrite.
config::Cors GoldenPolicy() {
  auto table = RoutesWithCors(R"(
      "allow_origin_string_match": [{"exact": "https://example.com"},
                                    {"safe_regex": {"regex": "https://.*\\.example\\.org"}}],
      "allow_methods": "GET,POST", "allow_headers": "x-tenant", "expose_headers": "x-route",
      "max_age": "86400", "allow_credentials": true)");
  REQUIRE(table.ok());
  REQUIRE((*table)->virtual_hosts[0].routes[0].cors.has_value());
  return *(*table)->virtual_hosts[0].routes[0].cors;
}

http::HeaderMap Added(const config::HeaderMutations& mutations) {
  http::HeaderMap headers;
  for (const auto& header : mutations.add) headers.Add(header.key, header.value);
  return headers;
}

TEST_CASE("cors and fault: the most specific per-filter config wins whole") {
  // Route configuration level: fault; virtual host "a": a CORS policy; its first route its own,
  // its second route none (so the host's); virtual host "b" none (nothing, fault inherited).
  auto cors = [](const std::string& origin) {
    return R"("envoy.filters.http.cors": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"exact": ")" + origin + R"("}]})";
  };
  const std::string fault = R"("envoy.filters.http.fault": {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
      "abort": {"http_status": 418, "percentage": {"numerator": 100}}})";
  auto table = config::ParseRouteConfiguration(FromJson<envoy::config::route::v3::RouteConfiguration>(
      R"({"name": "r", "typed_per_filter_config": {)" + fault + R"(},
          "virtual_hosts": [
        {"name": "a", "domains": ["a"], "typed_per_filter_config": {)" + cors("https://host") + R"(},
         "routes": [
          {"match": {"prefix": "/own"}, "route": {"cluster": "c"},
           "typed_per_filter_config": {)" + cors("https://route") + R"(}},
          {"match": {"prefix": "/"}, "route": {"cluster": "c"}}]},
        {"name": "b", "domains": ["b"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "c"}}]}]})"));
  REQUIRE(table.ok());
  const auto& a = (*table)->virtual_hosts[0].routes;
  const auto& b = (*table)->virtual_hosts[1].routes;
  REQUIRE(a[0].cors.has_value());
  CHECK(a[0].cors->allow_origins[0].Matches("https://route"));
  CHECK_FALSE(a[0].cors->allow_origins[0].Matches("https://host"));
  REQUIRE(a[1].cors.has_value());
  CHECK(a[1].cors->allow_origins[0].Matches("https://host"));
  CHECK_FALSE(b[0].cors.has_value());
  for (const config::Route* route : {&a[0], &a[1], &b[0]}) {
    REQUIRE(route->fault.has_value());
    CHECK(route->fault->abort_http_status == 418u);
  }
  // An unknown filter's config at the virtual host is NACKed with its path.
  auto bad = config::ParseRouteConfiguration(FromJson<envoy::config::route::v3::RouteConfiguration>(
      R"({"name": "r", "virtual_hosts": [{"name": "a", "domains": ["a"],
          "typed_per_filter_config": {"envoy.filters.http.lua": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
          "routes": []}]})"));
  CHECK(bad.status().message() ==
        "virtual_hosts[0].typed_per_filter_config[envoy.filters.http.lua]: unsupported filter config");
}

TEST_CASE("cors: a preflight from an allowed origin is answered with the policy") {
  const config::Cors cors = GoldenPolicy();
  const http::HeaderMap request{{":method", "OPTIONS"},
                                {":path", "/"},
                                {"origin", "https://api.example.org"},
                                {"access-control-request-method", "POST"}};
  router::CorsDecision decision = router::DecideCors(cors, request);
  REQUIRE(decision.local_reply.has_value());
  const http::HeaderMap& reply = *decision.local_reply;
  CHECK(reply.Status() == 200);
  CHECK(reply.GetOr("access-control-allow-origin", "") == "https://api.example.org");
  CHECK(reply.GetOr("access-control-allow-methods", "") == "GET,POST");
  CHECK(reply.GetOr("access-control-allow-headers", "") == "x-tenant");
  CHECK(reply.GetOr("access-control-max-age", "") == "86400");
  CHECK(reply.GetOr("access-control-allow-credentials", "") == "true");
  CHECK_FALSE(reply.Has("access-control-expose-headers"));
  CHECK_FALSE(reply.Has("access-control-allow-private-network"));
}

TEST_CASE("cors: an actual request from an allowed origin gets origin, credentials, expose") {
  const config::Cors cors = GoldenPolicy();
  for (const char* method : {"GET", "OPTIONS"}) {  // OPTIONS without a requested method
    const http::HeaderMap request{{":method", method}, {"origin", "https://example.com"}};
    router::CorsDecision decision = router::DecideCors(cors, request);
    CHECK_FALSE(decision.local_reply.has_value());
    const http::HeaderMap added = Added(decision.response_headers);
    CHECK(added.GetOr("access-control-allow-origin", "") == "https://example.com");
    CHECK(added.GetOr("access-control-allow-credentials", "") == "true");
    CHECK(added.GetOr("access-control-expose-headers", "") == "x-route");
    CHECK_FALSE(added.Has("access-control-allow-methods"));
    CHECK_FALSE(added.Has("access-control-max-age"));
  }
}

TEST_CASE("cors: no Origin, or an origin not allowed, gets nothing and preflights go on") {
  const config::Cors cors = GoldenPolicy();
  for (const http::HeaderMap& request : {
           http::HeaderMap{{":method", "GET"}},
           http::HeaderMap{{":method", "GET"}, {"origin", "https://example.com.evil"}},
           http::HeaderMap{{":method", "OPTIONS"},
                           {"origin", "https://evil.example"},
                           {"access-control-request-method", "GET"}},
       }) {
    router::CorsDecision decision = router::DecideCors(cors, request);
    CHECK_FALSE(decision.local_reply.has_value());
    CHECK(decision.response_headers.empty());
  }
}

TEST_CASE("cors: forward_not_matching_preflights false answers other preflights bare") {
  config::Cors cors = GoldenPolicy();
  cors.forward_not_matching_preflights = false;
  const http::HeaderMap request{{":method", "OPTIONS"},
                                {"origin", "https://evil.example"},
                                {"access-control-request-method", "GET"}};
  router::CorsDecision decision = router::DecideCors(cors, request);
  REQUIRE(decision.local_reply.has_value());
  CHECK(decision.local_reply->Status() == 200);
  CHECK_FALSE(decision.local_reply->Has("access-control-allow-origin"));
}

TEST_CASE("cors: private network access only when asked for and allowed") {
  auto table = RoutesWithCors(R"(
      "allow_origin_string_match": [{"prefix": "http://"}],
      "allow_private_network_access": true, "filter_enabled": {"default_value": {"numerator": 50}})");
  REQUIRE(table.ok());
  const config::Cors& cors = *(*table)->virtual_hosts[0].routes[0].cors;
  CHECK(cors.enabled_per_million == 500000);
  CHECK_FALSE(cors.allow_credentials);
  http::HeaderMap request{{":method", "OPTIONS"},
                          {"origin", "http://intranet"},
                          {"access-control-request-method", "PUT"}};
  auto without = router::DecideCors(cors, request);
  REQUIRE(without.local_reply.has_value());
  CHECK_FALSE(without.local_reply->Has("access-control-allow-private-network"));
  CHECK_FALSE(without.local_reply->Has("access-control-allow-credentials"));
  request.Add("access-control-request-private-network", "true");
  auto with = router::DecideCors(cors, request);
  REQUIRE(with.local_reply.has_value());
  CHECK(with.local_reply->GetOr("access-control-allow-private-network", "") == "true");
}

TEST_CASE("cors: a bad origin matcher is rejected with its field path") {
  auto table = RoutesWithCors(R"("allow_origin_string_match": [{"safe_regex": {"regex": "("}}])");
  REQUIRE_FALSE(table.ok());
  CHECK_THAT(std::string(table.status().message()),
             Catch::StartsWith("virtual_hosts[0].routes[0].typed_per_filter_config["
                               "envoy.filters.http.cors].allow_origin_string_match[0]"));
}

TEST_CASE("mirror: request_mirror_policies with their fractions") {
  auto table = config::ParseRouteConfiguration(
      FromJson<envoy::config::route::v3::RouteConfiguration>(R"({"name": "r", "virtual_hosts": [{
        "name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {
          "cluster": "c", "request_mirror_policies": [
            {"cluster": "m1"},
            {"cluster": "m2", "runtime_fraction": {"default_value": {"numerator": 50000,
                                                                     "denominator": "MILLION"}},
             "disable_shadow_host_suffix_append": true}]}}]}]})"));
  REQUIRE(table.ok());
  const auto& action =
      std::get<config::RouteAction>((*table)->virtual_hosts[0].routes[0].action);
  REQUIRE(action.mirrors.size() == 2);
  CHECK(action.mirrors[0].cluster == "m1");
  CHECK(action.mirrors[0].per_million == 1000000);
  CHECK(action.mirrors[0].append_shadow_suffix);
  CHECK(action.mirrors[1].cluster == "m2");
  CHECK(action.mirrors[1].per_million == 50000);
  CHECK_FALSE(action.mirrors[1].append_shadow_suffix);

  auto header_cluster = config::ParseRouteConfiguration(
      FromJson<envoy::config::route::v3::RouteConfiguration>(R"({"name": "r", "virtual_hosts": [{
        "name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {
          "cluster": "c", "request_mirror_policies": [{"cluster_header": "x-mirror"}]}}]}]})"));
  REQUIRE_FALSE(header_cluster.ok());
  CHECK(header_cluster.status().message() ==
        "virtual_hosts[0].routes[0].route.request_mirror_policies[0].cluster: empty "
        "(cluster_header is not supported)");
}

TEST_CASE("mirror: the shadow host keeps the port") {
  CHECK(router::ShadowHost("reviews") == "reviews-shadow");
  CHECK(router::ShadowHost("reviews.default:9080") == "reviews.default-shadow:9080");
  CHECK(router::ShadowHost("10.0.0.1:80") == "10.0.0.1-shadow:80");
  CHECK(router::ShadowHost("[::1]:8080") == "[::1]-shadow:8080");
}

}  // namespace
}  // namespace meshpilot::sidecar
