#include <catch2/catch.hpp>

#include "tests/unit/convert/parse_test_util.h"

namespace meshpilot::convert {
namespace {

using model::StringMatch;
using std::chrono::milliseconds;
using testing::CheckErrors;
using testing::ErrorOf;
using testing::ParseAs;

constexpr char kFullVirtualService[] = R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: prod}
spec:
  hosts: [reviews, reviews.prod.svc.cluster.local]
  gateways: [mesh, prod/public]
  exportTo: [".", istio-system]
  http:
  - name: canary
    match:
    - name: jason
      uri: {prefix: /api}
      scheme: {exact: https}
      method: {regex: "GET|HEAD"}
      authority: {exact: reviews}
      headers:
        end-user: {exact: jason}
        x-present: {}
      queryParams: {debug: {exact: "1"}}
      withoutHeaders: {x-skip: {regex: "*"}}
      port: 9080
      sourceLabels: {app: productpage}
      gateways: [mesh]
      sourceNamespace: frontend
      ignoreUriCase: true
    route:
    - destination: {host: reviews, subset: v2, port: {number: 9080}}
      weight: 25
      headers:
        request: {set: {x-canary: "true"}, add: {x-trace: on}, remove: [x-debug]}
        response: {remove: [server]}
    - destination: {host: reviews, subset: v1}
      weight: 75
    rewrite: {uri: /v2/api, authority: reviews-v2}
    timeout: 1.5s
    retries:
      attempts: 3
      perTryTimeout: 500ms
      retryOn: "5xx,connect-failure,503"
      retryRemoteLocalities: true
    fault:
      delay: {fixedDelay: 5s, percentage: {value: 10}}
      abort: {httpStatus: 503, percentage: {value: 0.5}}
    mirror: {host: reviews-shadow}
    mirrorPercentage: {value: 20}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}, {regex: "https://.*\\.example\\.org"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      exposeHeaders: [x-reply]
      maxAge: 24h
      allowCredentials: true
    headers:
      request: {set: {x-route: canary}}
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: example.com, redirectCode: 302, scheme: https}
  - match: [{uri: {exact: /health}}]
    directResponse: {status: 200, body: {string: ok}}
  - mirrors:
    - destination: {host: a}
      percentage: {value: 5}
    route:
    - destination: {host: reviews, subset: v1}
    fault:
      abort: {grpcStatus: UNAVAILABLE}
    rewrite:
      uriRegexRewrite: {match: "^/v1/(.*)$", rewrite: "/\\1"}
  tcp:
  - match: [{port: 27017, destinationSubnets: [10.0.0.0/8], sourceLabels: {app: a}}]
    route:
    - destination: {host: mongo, port: {number: 27017}}
  tls:
  - match: [{sniHosts: [reviews], port: 443}]
    route:
    - destination: {host: reviews, port: {number: 443}}
)";

TEST_CASE("A VirtualService using every field parses", "[virtual_service]") {
  auto vs = ParseAs<model::VirtualService>(kFullVirtualService);
  CHECK(vs.meta.Key() == "prod/reviews");
  CHECK(vs.hosts.size() == 2);
  CHECK(vs.gateways == std::vector<std::string>{"mesh", "prod/public"});
  CHECK(vs.export_to == std::vector<std::string>{".", "istio-system"});
  REQUIRE(vs.http.size() == 4);

  const model::HttpRoute& canary = vs.http[0];
  CHECK(canary.name == "canary");
  REQUIRE(canary.match.size() == 1);
  const model::HttpMatchRequest& match = canary.match[0];
  CHECK(match.name == "jason");
  CHECK(match.uri->type == StringMatch::Type::kPrefix);
  CHECK(match.uri->value == "/api");
  CHECK(match.method->type == StringMatch::Type::kRegex);
  CHECK(match.headers.at("end-user").value == "jason");
  CHECK(match.headers.at("x-present").type == StringMatch::Type::kPresent);
  CHECK(match.query_params.at("debug").value == "1");
  CHECK(match.without_headers.at("x-skip").type == StringMatch::Type::kPresent);
  CHECK(match.port == 9080u);
  CHECK(match.source_labels.at("app") == "productpage");
  CHECK(match.source_namespace == "frontend");
  CHECK(match.ignore_uri_case);

  REQUIRE(canary.route.size() == 2);
  CHECK(canary.route[0].destination.host == "reviews");
  CHECK(canary.route[0].destination.subset == "v2");
  CHECK(canary.route[0].destination.port == 9080u);
  CHECK(canary.route[0].weight == 25);
  CHECK(canary.route[0].headers.request.set.at("x-canary") == "true");
  CHECK(canary.route[0].headers.request.add.at("x-trace") == "on");
  CHECK(canary.route[0].headers.request.remove == std::vector<std::string>{"x-debug"});
  CHECK(canary.route[0].headers.response.remove == std::vector<std::string>{"server"});
  CHECK(canary.route[1].weight == 75);
  CHECK(canary.rewrite->uri == "/v2/api");
  CHECK(canary.rewrite->authority == "reviews-v2");
  CHECK(canary.timeout == milliseconds(1500));
  CHECK(canary.retries->attempts == 3);
  CHECK(canary.retries->per_try_timeout == milliseconds(500));
  CHECK(canary.retries->retry_on == "5xx,connect-failure,503");
  CHECK(canary.retries->retry_remote_localities == true);
  CHECK(canary.fault->delay->fixed_delay == milliseconds(5000));
  CHECK(canary.fault->delay->percentage == 10.0);
  CHECK(canary.fault->abort->http_status == 503);
  CHECK(canary.fault->abort->percentage == 0.5);
  CHECK(canary.mirror->host == "reviews-shadow");
  CHECK(canary.mirror_percentage == 20.0);
  REQUIRE(canary.cors_policy.has_value());
  CHECK(canary.cors_policy->allow_origins.size() == 2);
  CHECK(canary.cors_policy->allow_methods == std::vector<std::string>{"GET", "POST"});
  CHECK(canary.cors_policy->max_age == milliseconds(24 * 3600 * 1000));
  CHECK(canary.cors_policy->allow_credentials == true);
  CHECK(canary.headers.request.set.at("x-route") == "canary");

  CHECK(vs.http[1].redirect->uri == "/new");
  CHECK(vs.http[1].redirect->redirect_code == 302);
  CHECK(vs.http[2].direct_response->status == 200);
  CHECK(vs.http[2].direct_response->body == "ok");
  CHECK(vs.http[3].mirrors.at(0).percentage == 5.0);
  CHECK(vs.http[3].fault->abort->grpc_status == "UNAVAILABLE");
  CHECK(vs.http[3].rewrite->uri_regex_rewrite->rewrite == "/\\1");

  REQUIRE(vs.tcp.size() == 1);
  CHECK(vs.tcp[0].match[0].port == 27017u);
  CHECK(vs.tcp[0].match[0].destination_subnets == std::vector<std::string>{"10.0.0.0/8"});
  CHECK(vs.tcp[0].route[0].destination.host == "mongo");
  REQUIRE(vs.tls.size() == 1);
  CHECK(vs.tls[0].match[0].sni_hosts == std::vector<std::string>{"reviews"});
}

TEST_CASE("Older networking.istio.io versions parse the same way", "[virtual_service]") {
  for (const char* version : {"v1beta1", "v1alpha3"}) {
    auto vs = ParseAs<model::VirtualService>(absl::StrCat(R"(
apiVersion: networking.istio.io/)", version, R"(
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http: [{route: [{destination: {host: r}}]}]
)"));
    CHECK(vs.http.at(0).route.at(0).destination.host == "r");
  }
}

TEST_CASE("Bad weights are reported with their paths", "[virtual_service]") {
  std::string error = ErrorOf(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route:
    - {destination: {host: a}, weight: 10}
    - {destination: {host: b}, weight: -1}
  - route:
    - {destination: {host: a}, weight: 0}
    - {destination: {host: b}}
  - route:
    - {destination: {host: a}, weight: ten}
)");
  CheckErrors(error, {
      "spec.http[0].route[1].weight: must be >= 0",
      "spec.http[1].route: total weight must be > 0 when there is more than one",
      "spec.http[2].route[0].weight: must be an integer",
  });
}

TEST_CASE("Weights are relative, as in current Istio", "[virtual_service]") {
  auto vs = ParseAs<model::VirtualService>(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route:
    - {destination: {host: a}, weight: 1}
    - {destination: {host: b}, weight: 3}
)");
  CHECK(vs.http[0].route[1].weight == 3);
}

TEST_CASE("Bad durations are reported with their paths", "[virtual_service]") {
  std::string error = ErrorOf(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route: [{destination: {host: a}}]
    timeout: 10
    retries: {attempts: 2, perTryTimeout: 0.5ms}
    fault: {delay: {fixedDelay: 5 seconds}}
)");
  CheckErrors(error, {
      "spec.http[0].timeout: invalid duration \"10\"",
      "spec.http[0].retries.perTryTimeout: duration \"0.5ms\" must be",
      "spec.http[0].fault.delay.fixedDelay: invalid duration",
  });
}

TEST_CASE("Bad regexes are reported with their paths", "[virtual_service]") {
  std::string error = ErrorOf(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - match:
    - uri: {regex: "/api/(v1"}
      headers: {x-id: {regex: "a**"}}
    - queryParams: {q: {regex: "(?<=a)b"}}
    route: [{destination: {host: a}}]
)");
  CheckErrors(error, {
      "spec.http[0].match[0].uri.regex: invalid regex",
      "spec.http[0].match[0].headers[x-id].regex: invalid regex",
  });
  // Lookbehind is not RE2, so Envoy would reject it.
  CHECK_THAT(error, Catch::Contains("spec.http[0].match[1].queryParams[q].regex: invalid regex"));
}

TEST_CASE("Header values are Envoy format strings: a lone % is rejected", "[virtual_service]") {
  std::string error = ErrorOf(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - headers:
      request:
        set: {x-discount: "50%", x-ok: "50%% off", x-client: "%DOWNSTREAM_REMOTE_ADDRESS%"}
      response:
        add: {x-bad: "%PROTOCOL% 100%"}
    route: [{destination: {host: a}}]
)");
  CheckErrors(error, {
      "spec.http[0].headers.request.set[x-discount]: a '%' starts an Envoy %COMMAND% that does "
      "not end (write '%%' for a literal '%')",
      "spec.http[0].headers.response.add[x-bad]: a '%' starts an Envoy %COMMAND% that does not "
      "end (write '%%' for a literal '%')",
  });
  CHECK_THAT(error, !Catch::Contains("x-ok"));
  CHECK_THAT(error, !Catch::Contains("x-client"));
}

TEST_CASE("Missing hosts and bad ports are reported with their paths", "[virtual_service]") {
  std::string error = ErrorOf(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r, "*"]
  http:
  - match: [{port: 0}]
    route:
    - destination: {subset: v1}
    - destination: {host: b, port: {number: 65536}}
    - weight: 1
  tcp:
  - route: []
)");
  CheckErrors(error, {
      "spec.hosts[1]: the wildcard host * is not allowed for the mesh",
      "spec.http[0].match[0].port: must be between 1 and 65535",
      "spec.http[0].route[0].destination.host: required",
      "spec.http[0].route[1].destination.port.number: must be between 1 and 65535",
      "spec.http[0].route[2].destination: required",
      "spec.tcp[0].route: required",
  });
}

TEST_CASE("Conflicting route actions and unknown fields are rejected", "[virtual_service]") {
  std::string error = ErrorOf(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route: [{destination: {host: a}}]
    redirect: {uri: /x}
  - timeout: 1s
  - route: [{destination: {host: a}}]
    retries: {attempts: 1, perTryTimout: 1s}
    fault: {abort: {httpStatus: 700}}
)");
  CheckErrors(error, {
      "spec.http[0].route: must not be set with redirect",
      "spec.http[1]: one of route, redirect or directResponse is required",
      "spec.http[2].retries.perTryTimout: unknown field",
      "spec.http[2].fault.abort.httpStatus: must be between 200 and 599",
  });
}

TEST_CASE("Delegation is rejected with a clear message", "[virtual_service]") {
  std::string error = ErrorOf(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - match: [{uri: {prefix: /api}}]
    delegate: {name: api, namespace: team}
)");
  CheckErrors(error, {
      "spec.http[0].delegate: VirtualService delegation is not supported by meshpilot; put the "
      "delegate's http routes in this VirtualService (a VirtualService needs hosts)",
      "spec.http[0]: one of route, redirect or directResponse is required",
  });
  CHECK_THAT(ErrorOf(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: team}
spec:
  http:
  - route: [{destination: {host: api}}]
)"),
             Catch::Contains("spec.hosts: VirtualService delegation is not supported"));
}

TEST_CASE("A VirtualService without routes is rejected", "[virtual_service]") {
  CHECK_THAT(ErrorOf(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec: {hosts: [r]}
)"),
             Catch::Contains("spec: one of http, tls or tcp routes is required"));
}

}  // namespace
}  // namespace meshpilot::convert
