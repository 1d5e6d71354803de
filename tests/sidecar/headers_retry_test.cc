// Header mutations, hop-by-hop removal, request ids, the retry policy's decisions, and the
// timeouts of a request (route timeout, max_stream_duration, grpc-timeout).

#include <catch2/catch.hpp>

#include <cstdio>
#include <regex>

#include "sidecar/config/route.h"
#include "sidecar/router/headers.h"
#include "sidecar/http/grpc.h"
#include "sidecar/router/retry.h"
#include "sidecar/router/timeout.h"
#include "tests/sidecar/proto_json.h"

namespace meshpilot::sidecar {
namespace {

using testing::FromJson;

std::vector<std::string> Values(const http::HeaderMap& headers, const std::string& name) {
  std::vector<std::string> values;
  for (const auto& [n, v] : headers.entries()) {
    if (n == name) values.emplace_back(v);
  }
  return values;
}

TEST_CASE("headers: add, append, overwrite, add-if-absent and remove") {
  auto route = FromJson<envoy::config::route::v3::Route>(R"({
    "request_headers_to_add": [
      {"header": {"key": "x-append", "value": "2"}},
      {"header": {"key": "x-overwrite", "value": "new"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
      {"header": {"key": "x-absent", "value": "added"}, "append_action": "ADD_IF_ABSENT"},
      {"header": {"key": "x-present", "value": "kept?"}, "append_action": "ADD_IF_ABSENT"},
      {"header": {"key": "x-only-if", "value": "no"}, "append_action": "OVERWRITE_IF_EXISTS"},
      {"header": {"key": "X-Legacy", "value": "v"}, "append": false}],
    "request_headers_to_remove": ["x-secret"]})");
  auto mutations = config::ParseHeaderMutations(route.request_headers_to_add(),
                                                route.request_headers_to_remove(), "r");
  REQUIRE(mutations.ok());
  http::HeaderMap fields{{"x-append", "1"},
                         {"x-overwrite", "old"},
                         {"x-present", "original"},
                         {"x-secret", "s"},
                         {"x-legacy", "old"}};
  router::ApplyHeaderMutations(*mutations, fields);
  CHECK(Values(fields, "x-append") == std::vector<std::string>{"1", "2"});
  CHECK(Values(fields, "x-overwrite") == std::vector<std::string>{"new"});
  CHECK(Values(fields, "x-absent") == std::vector<std::string>{"added"});
  CHECK(Values(fields, "x-present") == std::vector<std::string>{"original"});
  CHECK(Values(fields, "x-only-if").empty());
  CHECK(Values(fields, "x-legacy") == std::vector<std::string>{"v"});
  CHECK(Values(fields, "x-secret").empty());
}

TEST_CASE("headers: pseudo-headers cannot be added") {
  auto route = FromJson<envoy::config::route::v3::Route>(
      R"({"request_headers_to_add": [{"header": {"key": ":path", "value": "/"}}]})");
  auto mutations = config::ParseHeaderMutations(route.request_headers_to_add(),
                                                route.request_headers_to_remove(),
                                                "routes[0].request_headers_to_add");
  REQUIRE_FALSE(mutations.ok());
  CHECK(mutations.status().message() ==
        "routes[0].request_headers_to_add[0].header.key: must be a non-empty regular header name");
}

TEST_CASE("headers: values with Envoy's %COMMAND%s are evaluated per request") {
  auto route = FromJson<envoy::config::route::v3::Route>(R"({
    "request_headers_to_add": [
      {"header": {"key": "x-client", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}},
      {"header": {"key": "x-peer", "value": "%DOWNSTREAM_REMOTE_ADDRESS%"}},
      {"header": {"key": "x-local", "value": "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%:%DOWNSTREAM_LOCAL_PORT%"}},
      {"header": {"key": "x-info", "value": "%UPSTREAM_CLUSTER% %PROTOCOL% 100%% %REQ(X-User):3%"}},
      {"header": {"key": "x-start", "value": "%START_TIME%"}},
      {"header": {"key": "x-missing", "value": "%REQ(x-none)%"}},
      {"header": {"key": "x-literal", "value": "50%% off"}}]})");
  auto mutations = config::ParseHeaderMutations(route.request_headers_to_add(),
                                                route.request_headers_to_remove(), "r");
  REQUIRE(mutations.ok());
  CHECK(mutations->add[6].format.empty());  // no command: kept as a plain value
  CHECK(mutations->add[6].value == "50% off");
  http::HeaderMap fields{{"x-user", "alice"}};
  router::HeaderValueContext context{
      {boost::asio::ip::make_address("10.1.0.2"), 40000},
      {boost::asio::ip::make_address("::1"), 80},
      "HTTP/1.1",
      "outbound|80|v1|web.default.svc.cluster.local",
      &fields,
      std::chrono::system_clock::time_point(std::chrono::milliseconds(1700000000123))};
  router::ApplyHeaderMutations(*mutations, fields, &context);
  CHECK(Values(fields, "x-client") == std::vector<std::string>{"10.1.0.2"});
  CHECK(Values(fields, "x-peer") == std::vector<std::string>{"10.1.0.2:40000"});
  CHECK(Values(fields, "x-local") == std::vector<std::string>{"::1:80"});
  CHECK(Values(fields, "x-info") ==
        std::vector<std::string>{"outbound|80|v1|web.default.svc.cluster.local HTTP/1.1 100% ali"});
  CHECK(Values(fields, "x-start") == std::vector<std::string>{"2023-11-14T22:13:20.123Z"});
  CHECK(Values(fields, "x-missing").empty());  // an empty value is not added, as Envoy
  CHECK(Values(fields, "x-literal") == std::vector<std::string>{"50% off"});
  http::HeaderMap without_context;
  router::ApplyHeaderMutations(*mutations, without_context);
  CHECK(Values(without_context, "x-client").empty());
  CHECK(Values(without_context, "x-literal") == std::vector<std::string>{"50% off"});
}

TEST_CASE("headers: unknown commands and a lone % are rejected with the field") {
  for (const auto& [value, message] : std::vector<std::pair<std::string, std::string>>{
           {"%NO_SUCH%", "r[0].header.value: %NO_SUCH% is not a command meshproxy supports"},
           {"50%", "r[0].header.value: a '%' starts a command that does not end (write '%%' for "
                   "a literal '%')"},
           {"%REQ()%", "r[0].header.value: %REQ(...)% needs a header name"},
           {"%REQ(a)x%", "r[0].header.value: after %REQ(NAME)% only :MAX_LENGTH may follow"}}) {
    envoy::config::route::v3::Route route;
    auto* header = route.add_request_headers_to_add()->mutable_header();
    header->set_key("x");
    header->set_value(value);
    auto mutations = config::ParseHeaderMutations(route.request_headers_to_add(),
                                                  route.request_headers_to_remove(), "r");
    REQUIRE_FALSE(mutations.ok());
    CHECK(mutations.status().message() == message);
  }
}

TEST_CASE("headers: hop-by-hop headers and those Connection names are removed") {
  http::HeaderMap fields{{"connection", "keep-alive, X-Hop"},
                         {"x-hop", "1"},
                         {"keep-alive", "timeout=5"},
                         {"upgrade", "h2c"},
                         {"transfer-encoding", "chunked"},
                         {"te", "gzip"},
                         {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
                         {"x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"}};
  router::StripHopByHop(fields);
  for (const char* hop : {"connection", "x-hop", "keep-alive", "upgrade", "transfer-encoding", "te"}) {
    CHECK_FALSE(fields.Has(hop));
  }
  // Trace context is end to end: it stays.
  CHECK(fields.Has("traceparent"));
  CHECK(fields.Has("x-b3-traceid"));
}

TEST_CASE("headers: Connection with only keep-alive or close names no other header") {
  for (const char* options : {"Keep-Alive", "close"}) {
    http::HeaderMap fields{{"connection", options}, {"close", "1"}, {"keep-alive", "timeout=5"},
                           {"x-a", "1"}};
    router::StripHopByHop(fields);
    CHECK_FALSE(fields.Has("connection"));
    CHECK_FALSE(fields.Has("keep-alive"));  // hop-by-hop by name
    CHECK(fields.GetOr("close", "") == "1");
    CHECK(fields.GetOr("x-a", "") == "1");
  }
}

TEST_CASE("headers: te: trailers is end to end, as gRPC needs") {
  http::HeaderMap fields{{"te", "trailers"}, {"content-type", "application/grpc"}};
  router::StripHopByHop(fields);
  CHECK(fields.GetOr("te", "") == "trailers");
}

TEST_CASE("headers: request ids are version-4 UUIDs") {
  std::mt19937_64 rng(3);
  std::string a(router::NewRequestId(rng).view());
  std::string b(router::NewRequestId(rng).view());
  std::regex uuid("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  CHECK(std::regex_match(a, uuid));
  CHECK(a != b);
  // The digits are the generator's two words, as printf would write them.
  std::mt19937_64 same(3);
  const uint64_t hi = (same() & 0xffffffffffff0fffULL) | 0x4000;
  const uint64_t lo = (same() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  char expected[37];
  std::snprintf(expected, sizeof(expected), "%08x-%04x-%04x-%04x-%012llx",
                static_cast<unsigned>(hi >> 32), static_cast<unsigned>((hi >> 16) & 0xffff),
                static_cast<unsigned>(hi & 0xffff), static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  CHECK(a == expected);
}

config::RetryPolicy Policy(const std::string& json) {
  auto policy = config::ParseRetryPolicy(FromJson<envoy::config::route::v3::RetryPolicy>(json),
                                         "retry_policy");
  REQUIRE(policy.ok());
  return *policy;
}

TEST_CASE("retry: conditions as Envoy reads them") {
  using router::AttemptOutcome;
  using router::ShouldRetry;
  auto five_xx = Policy(R"({"retry_on": "5xx", "num_retries": 3})");
  CHECK(five_xx.num_retries == 3);
  CHECK(ShouldRetry(five_xx, AttemptOutcome::kResponse, 500));
  CHECK(ShouldRetry(five_xx, AttemptOutcome::kResponse, 503));
  CHECK_FALSE(ShouldRetry(five_xx, AttemptOutcome::kResponse, 404));
  CHECK(ShouldRetry(five_xx, AttemptOutcome::kConnectFailure));
  CHECK(ShouldRetry(five_xx, AttemptOutcome::kReset));
  CHECK(ShouldRetry(five_xx, AttemptOutcome::kPerTryTimeout));

  auto gateway = Policy(R"({"retry_on": "gateway-error"})");
  CHECK(gateway.num_retries == 1);
  CHECK_FALSE(ShouldRetry(gateway, AttemptOutcome::kResponse, 500));
  CHECK(ShouldRetry(gateway, AttemptOutcome::kResponse, 502));
  CHECK(ShouldRetry(gateway, AttemptOutcome::kPerTryTimeout));

  auto reset = Policy(R"({"retry_on": "reset"})");
  CHECK(ShouldRetry(reset, AttemptOutcome::kReset));
  CHECK(ShouldRetry(reset, AttemptOutcome::kPerTryTimeout));  // a local reset, in Envoy
  CHECK_FALSE(ShouldRetry(reset, AttemptOutcome::kResponse, 503));

  auto connect = Policy(R"({"retry_on": "connect-failure"})");
  CHECK(ShouldRetry(connect, AttemptOutcome::kConnectFailure));
  CHECK_FALSE(ShouldRetry(connect, AttemptOutcome::kPerTryTimeout));
  CHECK_FALSE(ShouldRetry(connect, AttemptOutcome::kReset));
  CHECK_FALSE(ShouldRetry(connect, AttemptOutcome::kResponse, 503));

  // What meshpilot sends for Istio's default retry policy.
  auto istio = Policy(R"({"retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                          "num_retries": 2, "retriable_status_codes": [503],
                          "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts"}]})");
  CHECK(istio.avoid_previous_hosts);
  CHECK(ShouldRetry(istio, AttemptOutcome::kResponse, 503));
  CHECK_FALSE(ShouldRetry(istio, AttemptOutcome::kResponse, 502));
  CHECK(ShouldRetry(Policy(R"({"retry_on": "retriable-4xx"})"), AttemptOutcome::kResponse, 409));
  CHECK(ShouldRetry(istio, AttemptOutcome::kRefusedStream));
  CHECK_FALSE(ShouldRetry(istio, AttemptOutcome::kReset));
}

TEST_CASE("retry: gRPC conditions read grpc-status") {
  using router::AttemptOutcome;
  using router::ShouldRetry;
  auto grpc = Policy(R"({"retry_on": "unavailable,cancelled,deadline-exceeded,resource-exhausted"})");
  CHECK(ShouldRetry(grpc, AttemptOutcome::kResponse, 200, 14));
  CHECK(ShouldRetry(grpc, AttemptOutcome::kResponse, 200, 1));
  CHECK(ShouldRetry(grpc, AttemptOutcome::kResponse, 200, 4));
  CHECK(ShouldRetry(grpc, AttemptOutcome::kResponse, 200, 8));
  CHECK_FALSE(ShouldRetry(grpc, AttemptOutcome::kResponse, 200, 13));  // internal: not asked
  CHECK_FALSE(ShouldRetry(grpc, AttemptOutcome::kResponse, 200, 0));
  CHECK_FALSE(ShouldRetry(grpc, AttemptOutcome::kResponse, 200));
  CHECK_FALSE(ShouldRetry(grpc, AttemptOutcome::kReset));
  CHECK(ShouldRetry(Policy(R"({"retry_on": "internal"})"), AttemptOutcome::kResponse, 200, 13));
  // An HTTP condition does not fire on a gRPC status.
  CHECK_FALSE(ShouldRetry(Policy(R"({"retry_on": "5xx"})"), AttemptOutcome::kResponse, 200, 14));
}

TEST_CASE("retry: back-off is jittered below an exponential ceiling") {
  auto policy = Policy(R"({"retry_on": "5xx", "retry_back_off": {"base_interval": "0.1s", "max_interval": "0.3s"}})");
  for (uint64_t r = 0; r < 1000; r += 7) {
    CHECK(router::Backoff(policy, 1, r).count() < 100);
    CHECK(router::Backoff(policy, 2, r).count() < 200);
    CHECK(router::Backoff(policy, 5, r).count() < 300);
  }
  CHECK(router::Backoff(policy, 2, 150).count() == 150);
  auto defaults = Policy(R"({"retry_on": "5xx"})");
  CHECK(defaults.base_interval == std::chrono::milliseconds(25));
}

TEST_CASE("retry: unknown conditions and bad back-off are rejected with the field") {
  auto bad = config::ParseRetryPolicy(
      FromJson<envoy::config::route::v3::RetryPolicy>(R"({"retry_on": "5xx,sometimes"})"),
      "virtual_hosts[0].routes[0].route.retry_policy");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() ==
        "virtual_hosts[0].routes[0].route.retry_policy.retry_on: unknown condition \"sometimes\"");
}

config::RouteAction ActionOf(const std::string& route_action_json) {
  auto table = config::ParseRouteConfiguration(FromJson<envoy::config::route::v3::RouteConfiguration>(
      R"({"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
          {"match": {"prefix": "/"}, "route": )" + route_action_json + "}]}]}"));
  REQUIRE(table.ok());
  return std::get<config::RouteAction>((*table)->virtual_hosts[0].routes[0].action);
}

using std::chrono::milliseconds;

TEST_CASE("timeout: grpc-timeout is read as Envoy reads it") {
  auto read = [](const char* value) { return http::GrpcTimeout(http::HeaderMap{{"grpc-timeout", value}}); };
  CHECK(read("2S") == milliseconds(2000));
  CHECK(read("1H") == milliseconds(3600000));
  CHECK(read("3M") == milliseconds(180000));
  CHECK(read("250m") == milliseconds(250));
  CHECK(read("1500u") == milliseconds(2));  // rounded up
  CHECK(read("1n") == milliseconds(1));
  CHECK(read("0m") == milliseconds(0));
  CHECK(read("12345678S") == std::chrono::seconds(12345678));
  CHECK_FALSE(read("123456789S"));  // at most 8 digits
  CHECK_FALSE(read("5"));
  CHECK_FALSE(read("S"));
  CHECK_FALSE(read("5x"));
  CHECK_FALSE(read("-5S"));
  CHECK_FALSE(http::GrpcTimeout(http::HeaderMap{}));
}

TEST_CASE("timeout: Istio's grpc_timeout_header_max 0s honours the header uncapped") {
  // What meshpilot (and Istio) write for a route without a VirtualService timeout.
  const auto action = ActionOf(R"({"cluster": "c", "timeout": "0s",
      "max_stream_duration": {"grpc_timeout_header_max": "0s"}})");
  auto none = router::TimeoutsFor(action, true, std::nullopt, std::nullopt);
  CHECK(none.route == milliseconds(0));
  CHECK_FALSE(none.stream);
  auto header = router::TimeoutsFor(action, true, milliseconds(300000), std::nullopt);
  CHECK(header.route == milliseconds(0));
  CHECK(header.stream == milliseconds(300000));
}

TEST_CASE("timeout: grpc_timeout_header_max caps the header, the offset comes off") {
  const auto action = ActionOf(R"({"cluster": "c", "timeout": "10s",
      "max_stream_duration": {"grpc_timeout_header_max": "2s", "grpc_timeout_header_offset": "0.1s",
                              "max_stream_duration": "30s"}})");
  CHECK(router::TimeoutsFor(action, true, milliseconds(5000), std::nullopt).stream == milliseconds(1900));
  CHECK(router::TimeoutsFor(action, true, milliseconds(500), std::nullopt).stream == milliseconds(400));
  CHECK(router::TimeoutsFor(action, true, milliseconds(50), std::nullopt).stream == milliseconds(0));
  // No header: max_stream_duration; the route timeout stays apart.
  auto none = router::TimeoutsFor(action, true, std::nullopt, std::nullopt);
  CHECK(none.stream == milliseconds(30000));
  CHECK(none.route == milliseconds(10000));
  // Without grpc_timeout_header_max the header is not read.
  const auto plain = ActionOf(R"({"cluster": "c", "max_stream_duration": {"max_stream_duration": "0s"}})");
  CHECK_FALSE(router::TimeoutsFor(plain, true, milliseconds(100), std::nullopt).stream);
  // An explicit 0 on the route is no limit, even under a connection manager's.
  CHECK_FALSE(router::TimeoutsFor(plain, false, std::nullopt, milliseconds(700)).stream);
  CHECK(router::TimeoutsFor(plain, true, milliseconds(100), std::nullopt).route == milliseconds(15000));
}

TEST_CASE("timeout: the deprecated max_grpc_timeout replaces a gRPC request's route timeout") {
  const auto action = ActionOf(R"({"cluster": "c", "timeout": "10s", "max_grpc_timeout": "3s",
                                   "grpc_timeout_offset": "0.5s"})");
  CHECK(router::TimeoutsFor(action, true, milliseconds(2000), std::nullopt).route == milliseconds(1500));
  CHECK(router::TimeoutsFor(action, true, milliseconds(9000), std::nullopt).route == milliseconds(3000));
  CHECK(router::TimeoutsFor(action, true, std::nullopt, std::nullopt).route == milliseconds(3000));
  CHECK(router::TimeoutsFor(action, false, milliseconds(2000), std::nullopt).route == milliseconds(10000));
  CHECK_FALSE(router::TimeoutsFor(action, true, milliseconds(2000), std::nullopt).stream);
  // The connection manager's max_stream_duration still bounds the stream.
  CHECK(router::TimeoutsFor(action, true, milliseconds(2000), milliseconds(700)).stream ==
        milliseconds(700));
}

TEST_CASE("timeout: the connection manager's max_stream_duration when the route sets none") {
  const auto bare = ActionOf(R"({"cluster": "c"})");
  CHECK(router::TimeoutsFor(bare, false, std::nullopt, milliseconds(700)).stream ==
        milliseconds(700));
  CHECK_FALSE(router::TimeoutsFor(bare, false, std::nullopt, milliseconds(0)).stream);
  CHECK_FALSE(router::TimeoutsFor(bare, false, std::nullopt, std::nullopt).stream);
  // The route's own wins.
  const auto own = ActionOf(R"({"cluster": "c", "max_stream_duration": {"max_stream_duration": "2s"}})");
  CHECK(router::TimeoutsFor(own, false, std::nullopt, milliseconds(700)).stream ==
        milliseconds(2000));
  // A gRPC request's header wins where grpc_timeout_header_max asks for it.
  const auto header = ActionOf(R"({"cluster": "c", "max_stream_duration": {"grpc_timeout_header_max": "0s"}})");
  CHECK(router::TimeoutsFor(header, true, milliseconds(300), milliseconds(700)).stream ==
        milliseconds(300));
  CHECK(router::TimeoutsFor(header, true, std::nullopt, milliseconds(700)).stream ==
        milliseconds(700));
}

TEST_CASE("timeout: a negative grpc_timeout_header_max is rejected with its field") {
  auto table = config::ParseRouteConfiguration(FromJson<envoy::config::route::v3::RouteConfiguration>(
      R"({"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
          {"match": {"prefix": "/"}, "route": {"cluster": "c",
           "max_stream_duration": {"grpc_timeout_header_max": "-1s"}}}]}]})"));
  REQUIRE_FALSE(table.ok());
  CHECK(table.status().message() == "virtual_hosts[0].routes[0].route.max_stream_duration."
                                    "grpc_timeout_header_max: must not be negative");
}

}  // namespace
}  // namespace meshpilot::sidecar
