#include <catch2/catch.hpp>

#include "envoy/extensions/filters/http/cors/v3/cors.pb.h"
#include "envoy/extensions/filters/http/fault/v3/fault.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "tests/unit/translator/traffic_test_util.h"

namespace meshpilot::translator {
namespace {

using namespace traffic_testing;
using envoy::config::route::v3::Route;
using model::StringMatch;

constexpr char kV1[] = "outbound|9080|v1|reviews.default.svc.cluster.local";
constexpr char kV2[] = "outbound|9080|v2|reviews.default.svc.cluster.local";

// reviews with subsets v1/v2 and one VirtualService rule the test fills in.
struct Fixture {
  model::MeshState state = Mesh();
  model::HttpRoute& rule;
  Fixture() : rule(Init(state)) {}
  static model::HttpRoute& Init(model::MeshState& state) {
    AddVersionSubsets(AddDestinationRule(state, "default", "reviews", "reviews"));
    return AddVirtualService(state, "default", "reviews", {"reviews"}).http.emplace_back();
  }
  std::vector<Route> Routes(const ProxyInfo& proxy = Sidecar()) const {
    return ReviewsRoutes(state, proxy);
  }
};

TEST_CASE("a VirtualService replaces the default route: unmatched requests get 404",
          "[http_route]") {
  Fixture f;
  f.rule.match.push_back({.uri = StringMatch{StringMatch::Type::kPrefix, "/api"}});
  f.rule.route.push_back(To("reviews", "v1"));
  auto routes = f.Routes();
  REQUIRE(routes.size() == 1);  // no default route after the VirtualService's rules
  CHECK(routes[0].match().prefix() == "/api");
  CHECK(routes[0].route().cluster() == kV1);
  CHECK(routes[0].route().timeout().seconds() == 0);
}

TEST_CASE("match: uri, headers, authority, method, withoutHeaders, queryParams, case",
          "[http_route]") {
  Fixture f;
  model::HttpMatchRequest& m = f.rule.match.emplace_back();
  m.name = "m1";
  m.uri = StringMatch{StringMatch::Type::kRegex, "/r/[0-9]+"};
  m.ignore_uri_case = true;
  m.method = StringMatch{StringMatch::Type::kExact, "GET"};
  m.authority = StringMatch{StringMatch::Type::kPrefix, "reviews"};
  m.headers["end-user"] = {StringMatch::Type::kExact, "jason"};
  m.headers["x-present"] = {StringMatch::Type::kPresent, ""};
  m.without_headers["x-debug"] = {StringMatch::Type::kPresent, ""};
  m.query_params["v"] = {StringMatch::Type::kRegex, "[12]"};
  f.rule.match.push_back({.uri = StringMatch{StringMatch::Type::kExact, "/exact"}});
  f.rule.name = "r";
  f.rule.route.push_back(To("reviews", "v2"));

  auto routes = f.Routes();
  REQUIRE(routes.size() == 2);  // one route per match block
  const auto& match = routes[0].match();
  CHECK(routes[0].name() == "r.m1");
  CHECK(routes[1].name() == "r");
  CHECK(match.safe_regex().regex() == "/r/[0-9]+");
  CHECK_FALSE(match.case_sensitive().value());
  REQUIRE(match.headers_size() == 5);
  CHECK(match.headers(0).name() == ":authority");
  CHECK(match.headers(0).string_match().prefix() == "reviews");
  CHECK(match.headers(1).name() == ":method");
  CHECK(match.headers(1).string_match().exact() == "GET");
  CHECK(match.headers(2).name() == "end-user");
  CHECK(match.headers(3).present_match());
  CHECK(match.headers(4).name() == "x-debug");
  CHECK(match.headers(4).invert_match());
  REQUIRE(match.query_parameters_size() == 1);
  CHECK(match.query_parameters(0).string_match().safe_regex().regex() == "[12]");
  CHECK(routes[1].match().path() == "/exact");

  // gRPC's xDS client gets the classic header matcher fields (deprecated in Envoy's API).
  auto grpc = f.Routes(Grpc());
  REQUIRE(grpc.size() == 2);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  CHECK(grpc[0].match().headers(2).exact_match() == "jason");
  CHECK(grpc[0].match().headers(0).prefix_match() == "reviews");
#pragma GCC diagnostic pop
}

TEST_CASE("match blocks for other sources, ports or gateways are left out", "[http_route]") {
  Fixture f;
  f.rule.match.push_back({.port = 9999});
  f.rule.match.push_back({.source_labels = {{"app", "productpage"}}});
  f.rule.match.push_back({.gateways = {"ingress"}});
  f.rule.match.push_back({.source_namespace = "shop"});
  f.rule.route.push_back(To("reviews", "v2"));
  f.state.virtual_services.at("default/reviews").http.push_back(RouteTo("reviews", "v1"));

  auto routes = f.Routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].route().cluster() == kV1);

  // For a proxy the sourceLabels select, that match block matches every request: a catch-all
  // for this proxy, so the rules after it are left out, as istiod does.
  auto from_productpage = ReviewsRoutes(f.state, Proxy(false, "default", {{"app", "productpage"}}));
  REQUIRE(from_productpage.size() == 1);
  CHECK(from_productpage[0].route().cluster() == kV2);
  auto from_shop = ReviewsRoutes(f.state, Sidecar("shop"));
  REQUIRE(from_shop.size() == 1);
  CHECK(from_shop[0].route().cluster() == kV2);
}

TEST_CASE("a VirtualService without a rule for this proxy and port leaves the default route",
          "[http_route]") {
  Fixture f;
  f.rule.match.push_back({.port = 9999});
  f.rule.route.push_back(To("reviews", "v2"));
  auto routes = f.Routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].name() == "default");
  CHECK(routes[0].route().cluster() == "outbound|9080||reviews.default.svc.cluster.local");
}

TEST_CASE("weighted destinations become weighted_clusters with their total", "[http_route]") {
  Fixture f;
  f.rule.route = {To("reviews", "v1", 80), To("reviews", "v2", 20), To("reviews", "v3", 0)};
  f.rule.route[1].headers.request.set["x-canary"] = "true";
  auto routes = f.Routes();
  REQUIRE(routes.size() == 1);
  const auto& weighted = routes[0].route().weighted_clusters();
  REQUIRE(weighted.clusters_size() == 2);  // weight 0 is dropped when there are others
  CHECK(weighted.clusters(0).name() == kV1);
  CHECK(weighted.clusters(0).weight().value() == 80);
  CHECK(weighted.clusters(1).name() == kV2);
  CHECK(weighted.clusters(1).request_headers_to_add(0).header().key() == "x-canary");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  CHECK(weighted.total_weight().value() == 100);
#pragma GCC diagnostic pop
}

TEST_CASE("a lone destination takes all traffic whatever its weight", "[http_route]") {
  Fixture f;
  f.rule.route = {To("reviews", "v2", 0)};
  auto routes = f.Routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].route().cluster() == kV2);
}

TEST_CASE("headers, rewrite and authority", "[http_route]") {
  Fixture f;
  f.rule.route.push_back(To("reviews"));
  f.rule.headers.request.set = {{"x-set", "1"}};
  f.rule.headers.request.add = {{"x-add", "2"}};
  f.rule.headers.request.remove = {"x-remove"};
  f.rule.headers.response.set = {{"x-resp", "3"}};
  f.rule.route[0].headers.response.remove = {"server"};
  f.rule.rewrite = model::HttpRewrite{.uri = "/v2/", .authority = "reviews.internal"};
  auto routes = f.Routes();
  REQUIRE(routes.size() == 1);
  const Route& route = routes[0];
  CHECK(route.route().cluster() == "outbound|9080||reviews.default.svc.cluster.local");
  REQUIRE(route.request_headers_to_add_size() == 2);
  CHECK(route.request_headers_to_add(0).append_action() ==
        envoy::config::core::v3::HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD);
  CHECK(route.request_headers_to_add(1).append_action() ==
        envoy::config::core::v3::HeaderValueOption::APPEND_IF_EXISTS_OR_ADD);
  CHECK(route.request_headers_to_remove(0) == "x-remove");
  CHECK(route.response_headers_to_add(0).header().key() == "x-resp");
  CHECK(route.response_headers_to_remove(0) == "server");  // a lone destination's headers
  CHECK(route.route().prefix_rewrite() == "/v2/");
  CHECK(route.route().host_rewrite_literal() == "reviews.internal");

  Fixture regex;
  regex.rule.route.push_back(To("reviews"));
  regex.rule.rewrite =
      model::HttpRewrite{.uri_regex_rewrite = model::RegexRewrite{"^/a/(.*)", "/b/\\1"}};
  regex.rule.headers.request.set = {{":authority", "other"}};
  auto rewritten = regex.Routes();
  CHECK(rewritten[0].route().regex_rewrite().pattern().regex() == "^/a/(.*)");
  CHECK(rewritten[0].route().regex_rewrite().substitution() == "/b/\\1");
  CHECK(rewritten[0].route().host_rewrite_literal() == "other");
  CHECK(rewritten[0].request_headers_to_add_size() == 0);
}

TEST_CASE("redirect and direct response", "[http_route]") {
  Fixture f;
  f.rule.redirect = model::HttpRedirect{
      .uri = "/new",
      .authority = "new.example.com",
      .derive_port = model::HttpRedirect::DerivePort::kFromRequestPort,
      .scheme = "https",
      .redirect_code = 308};
  model::HttpRoute& direct = f.state.virtual_services.at("default/reviews").http.emplace_back();
  direct.direct_response = model::HttpDirectResponse{503, "down"};
  // The redirect rule above is a catch-all: nothing after it is built.
  CHECK(f.Routes().size() == 1);
  f.state.virtual_services.at("default/reviews").http[0].match.push_back(
      {.uri = StringMatch{StringMatch::Type::kPrefix, "/old"}});
  auto routes = f.Routes();
  REQUIRE(routes.size() == 2);
  const auto& redirect = routes[0].redirect();
  CHECK(redirect.path_redirect() == "/new");
  CHECK(redirect.host_redirect() == "new.example.com");
  CHECK(redirect.scheme_redirect() == "https");
  CHECK(redirect.port_redirect() == 9080);
  CHECK(redirect.response_code() == envoy::config::route::v3::RedirectAction::PERMANENT_REDIRECT);
  CHECK(routes[1].direct_response().status() == 503);
  CHECK(routes[1].direct_response().body().inline_string() == "down");
}

TEST_CASE("timeout is 0s unless set, and gRPC reads max_stream_duration", "[http_route]") {
  Fixture f;
  f.rule.route.push_back(To("reviews"));
  f.rule.timeout = std::chrono::milliseconds(1500);
  auto sidecar = f.Routes();
  CHECK(sidecar[0].route().timeout().seconds() == 1);
  CHECK(sidecar[0].route().timeout().nanos() == 500000000);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  // As Istio: a timeout caps grpc-timeout through the deprecated max_grpc_timeout.
  CHECK(sidecar[0].route().max_grpc_timeout().nanos() == 500000000);
#pragma GCC diagnostic pop
  CHECK_FALSE(sidecar[0].route().has_max_stream_duration());
  auto grpc = f.Routes(Grpc());
  CHECK(grpc[0].route().max_stream_duration().max_stream_duration().nanos() == 500000000);

  f.state.virtual_services.at("default/reviews").http[0].timeout.reset();
  CHECK_FALSE(f.Routes(Grpc())[0].route().has_max_stream_duration());
  // No timeout: the grpc-timeout header is the stream's limit, uncapped.
  const auto& uncapped = f.Routes()[0].route().max_stream_duration();
  CHECK(uncapped.has_grpc_timeout_header_max());
  CHECK(uncapped.grpc_timeout_header_max().seconds() == 0);
  CHECK(uncapped.has_max_stream_duration());
  CHECK(f.Routes()[0].route().timeout().seconds() == 0);
}

TEST_CASE("retries: Istio's default, overrides, status codes, attempts 0", "[http_route]") {
  Fixture f;
  f.rule.route.push_back(To("reviews"));
  auto by_default = f.Routes()[0].route().retry_policy();
  CHECK(by_default.retry_on() ==
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes");
  CHECK(by_default.num_retries().value() == 2);
  CHECK(by_default.retriable_status_codes(0) == 503);
  CHECK(by_default.retry_host_predicate(0).name() == "envoy.retry_host_predicates.previous_hosts");
  CHECK(by_default.host_selection_retry_max_attempts() == 5);

  f.state.virtual_services.at("default/reviews").http[0].retries = model::HttpRetry{
      .attempts = 3, .per_try_timeout = std::chrono::milliseconds(2000),
      .retry_on = "5xx,gateway-error,429", .retry_ignore_previous_hosts = false,
      .backoff = std::chrono::milliseconds(100)};
  auto custom = f.Routes()[0].route().retry_policy();
  CHECK(custom.num_retries().value() == 3);
  CHECK(custom.retry_on() == "5xx,gateway-error,retriable-status-codes");
  REQUIRE(custom.retriable_status_codes_size() == 1);
  CHECK(custom.retriable_status_codes(0) == 429);
  CHECK(custom.per_try_timeout().seconds() == 2);
  CHECK(custom.retry_host_predicate_size() == 0);
  CHECK(custom.retry_back_off().base_interval().nanos() == 100000000);

  f.state.virtual_services.at("default/reviews").http[0].retries = model::HttpRetry{.attempts = 0};
  CHECK_FALSE(f.Routes()[0].route().has_retry_policy());
}

TEST_CASE("fault: per-route config of the fault filter, which sits before the router",
          "[http_route][fault]") {
  Fixture f;
  f.rule.route.push_back(To("reviews"));
  f.rule.fault = model::HttpFaultInjection{
      .delay = model::HttpFaultInjection::Delay{std::chrono::milliseconds(5000), 10},
      .abort = model::HttpFaultInjection::Abort{.grpc_status = "UNAVAILABLE"}};
  for (const ProxyInfo& proxy : {Sidecar(), Grpc()}) {
    auto routes = f.Routes(proxy);
    REQUIRE(routes[0].typed_per_filter_config().contains("envoy.filters.http.fault"));
    envoy::extensions::filters::http::fault::v3::HTTPFault fault;
    REQUIRE(routes[0].typed_per_filter_config().at("envoy.filters.http.fault").UnpackTo(&fault));
    CHECK(fault.delay().fixed_delay().seconds() == 5);
    CHECK(fault.delay().percentage().numerator() == 100000);
    CHECK(fault.delay().percentage().denominator() == envoy::type::v3::FractionalPercent::MILLION);
    CHECK(fault.abort().grpc_status() == 14);
    CHECK(fault.abort().percentage().numerator() == 1000000);  // unset: every request
  }
  auto listeners = BuildListeners(f.state, Grpc());
  envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager hcm;
  REQUIRE(listeners[0].api_listener().api_listener().UnpackTo(&hcm));
  REQUIRE(hcm.http_filters_size() == 2);
  CHECK(hcm.http_filters(0).name() == "envoy.filters.http.fault");
  CHECK(hcm.http_filters(1).name() == "envoy.filters.http.router");
}

TEST_CASE("mirror and mirrors with percentages", "[http_route]") {
  Fixture f;
  f.rule.route.push_back(To("reviews", "v1"));
  f.rule.mirror = model::Destination{.host = "reviews", .subset = "v2"};
  f.rule.mirror_percentage = 12.5;
  auto mirrored = f.Routes()[0].route().request_mirror_policies();
  REQUIRE(mirrored.size() == 1);
  CHECK(mirrored[0].cluster() == kV2);
  CHECK(mirrored[0].runtime_fraction().default_value().numerator() == 125000);

  auto& rule = f.state.virtual_services.at("default/reviews").http[0];
  rule.mirror.reset();
  rule.mirrors = {{model::Destination{.host = "ratings.shop.svc.cluster.local",
                                      .port = 8080}, std::nullopt}};
  auto mirrors = f.Routes()[0].route().request_mirror_policies();
  REQUIRE(mirrors.size() == 1);
  CHECK(mirrors[0].cluster() == "outbound|8080||ratings.shop.svc.cluster.local");
  CHECK_FALSE(mirrors[0].has_runtime_fraction());
}

TEST_CASE("corsPolicy for sidecars only", "[http_route]") {
  Fixture f;
  f.rule.route.push_back(To("reviews"));
  f.rule.cors_policy = model::CorsPolicy{
      .allow_origins = {{StringMatch::Type::kExact, "https://example.com"}},
      .allow_methods = {"GET", "POST"},
      .allow_headers = {"x-a"},
      .max_age = std::chrono::hours(24),
      .allow_credentials = true};
  auto routes = f.Routes();
  envoy::extensions::filters::http::cors::v3::CorsPolicy cors;
  REQUIRE(routes[0].typed_per_filter_config().at("envoy.filters.http.cors").UnpackTo(&cors));
  CHECK(cors.allow_origin_string_match(0).exact() == "https://example.com");
  CHECK(cors.allow_methods() == "GET,POST");
  CHECK(cors.max_age() == "86400");
  CHECK(cors.allow_credentials().value());
  CHECK_FALSE(f.Routes(Grpc())[0].typed_per_filter_config().contains("envoy.filters.http.cors"));
}

TEST_CASE("consistentHash adds the hash policy to routes", "[http_route][traffic_policy]") {
  Fixture f;
  f.rule.route.push_back(To("reviews", "v1"));
  auto& rule = f.state.destination_rules.at("default/reviews");
  rule.traffic_policy.emplace().load_balancer.emplace().consistent_hash.emplace().http_header_name =
      "x-user";
  auto routes = f.Routes(Grpc());
  REQUIRE(routes[0].route().hash_policy_size() == 1);
  CHECK(routes[0].route().hash_policy(0).header().header_name() == "x-user");
}

}  // namespace
}  // namespace meshpilot::translator
