#include <catch2/catch.hpp>

#include "tests/unit/convert/parse_test_util.h"

namespace meshpilot::convert {
namespace {

using model::AuthorizationPolicy;
using testing::CheckErrors;
using testing::ErrorOf;
using testing::ParseAs;

TEST_CASE("An AuthorizationPolicy using every field parses", "[authorization_policy]") {
  auto policy = ParseAs<AuthorizationPolicy>(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin, namespace: foo}
spec:
  selector:
    matchLabels: {app: httpbin}
  action: DENY
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/sleep]
        notPrincipals: [cluster.local/ns/default/sa/bad]
        requestPrincipals: ["issuer/subject"]
        notRequestPrincipals: ["*"]
        namespaces: [test]
        notNamespaces: [prod]
        ipBlocks: [10.0.0.0/8]
        notIpBlocks: [10.1.2.3]
        remoteIpBlocks: ["2001:db8::/32"]
        notRemoteIpBlocks: [192.168.0.1/32]
    to:
    - operation:
        hosts: [httpbin.foo]
        notHosts: [admin.foo]
        ports: ["8080"]
        notPorts: ["9090"]
        methods: [GET]
        notMethods: [DELETE]
        paths: [/info*]
        notPaths: [/admin]
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.google.com"]
    - key: source.ip
      notValues: [10.0.0.1]
  - {}
)");
  CHECK(policy.meta.Key() == "foo/httpbin");
  CHECK(policy.selector->at("app") == "httpbin");
  CHECK(policy.action == AuthorizationPolicy::Action::kDeny);
  REQUIRE(policy.rules.size() == 2);
  const model::AuthorizationRule& rule = policy.rules[0];
  const model::AuthorizationSource& source = rule.from.at(0);
  CHECK(source.principals == std::vector<std::string>{"cluster.local/ns/default/sa/sleep"});
  CHECK(source.not_principals.size() == 1);
  CHECK(source.request_principals == std::vector<std::string>{"issuer/subject"});
  CHECK(source.not_request_principals.size() == 1);
  CHECK(source.namespaces == std::vector<std::string>{"test"});
  CHECK(source.not_namespaces == std::vector<std::string>{"prod"});
  CHECK(source.ip_blocks == std::vector<std::string>{"10.0.0.0/8"});
  CHECK(source.not_ip_blocks.size() == 1);
  CHECK(source.remote_ip_blocks == std::vector<std::string>{"2001:db8::/32"});
  CHECK(source.not_remote_ip_blocks.size() == 1);
  const model::AuthorizationOperation& operation = rule.to.at(0);
  CHECK(operation.hosts == std::vector<std::string>{"httpbin.foo"});
  CHECK(operation.not_hosts.size() == 1);
  CHECK(operation.ports == std::vector<std::string>{"8080"});
  CHECK(operation.not_ports.size() == 1);
  CHECK(operation.methods == std::vector<std::string>{"GET"});
  CHECK(operation.not_methods.size() == 1);
  CHECK(operation.paths == std::vector<std::string>{"/info*"});
  CHECK(operation.not_paths.size() == 1);
  REQUIRE(rule.when.size() == 2);
  CHECK(rule.when[0].key == "request.auth.claims[iss]");
  CHECK(rule.when[1].not_values == std::vector<std::string>{"10.0.0.1"});
  // The empty rule matches every request.
  CHECK(policy.rules[1].from.empty());
}

TEST_CASE("CUSTOM policies name a provider; targetRefs select services", "[authorization_policy]") {
  auto custom = ParseAs<AuthorizationPolicy>(R"(
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: ext-authz}
spec:
  targetRefs: [{kind: Service, group: "", name: httpbin}]
  action: CUSTOM
  provider: {name: my-ext-authz}
  rules: [{to: [{operation: {paths: [/admin/*]}}]}]
)");
  CHECK(custom.action == AuthorizationPolicy::Action::kCustom);
  CHECK(custom.provider == "my-ext-authz");
  CHECK(custom.target_refs.at(0).name == "httpbin");

  auto allow_nothing = ParseAs<AuthorizationPolicy>(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing}
spec: {}
)");
  CHECK(allow_nothing.action == AuthorizationPolicy::Action::kAllow);
  CHECK(allow_nothing.rules.empty());
}

TEST_CASE("AuthorizationPolicy problems are reported with their paths", "[authorization_policy]") {
  std::string error = ErrorOf(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad}
spec:
  selector: {matchLabels: {app: a}}
  targetRef: {kind: Service, name: a}
  action: DENY
  provider: {name: x}
  rules:
  - from: []
    to:
    - operation: {ports: ["0", http]}
    - operation: {}
    when:
    - key: source.ip
      values: [not-an-ip]
    - key: request.headers
      values: [a]
    - key: destination.color
      values: [blue]
    - key: source.namespace
  - from:
    - source: {ipBlocks: [10.0.0.0/33], principals: [""]}
    - {}
)");
  CheckErrors(error, {
      "spec: only one of selector, targetRef or targetRefs",
      "spec.provider: only allowed with action CUSTOM",
      "spec.rules[0].from: must not be empty",
      "spec.rules[0].to[0].operation.ports[0]: \"0\" is not a port",
      "spec.rules[0].to[0].operation.ports[1]: \"http\" is not a port",
      "spec.rules[0].to[1].operation: must not be empty",
      "spec.rules[0].when[0].values[0]: \"not-an-ip\" is not a valid IP",
      "spec.rules[0].when[1].key: \"request.headers\" must name an entry",
      "spec.rules[0].when[2].key: unknown attribute",
      "spec.rules[0].when[3]: one of values or notValues is required",
      "spec.rules[1].from[0].source.ipBlocks[0]: \"10.0.0.0/33\" has an invalid prefix",
      "spec.rules[1].from[0].source.principals[0]: must not be empty",
      "spec.rules[1].from[1].source: required",
  });
}

TEST_CASE("DENY and CUSTOM policies without rules are rejected", "[authorization_policy]") {
  CHECK_THAT(ErrorOf(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny}
spec: {action: DENY}
)"),
             Catch::Contains("spec.rules: required for DENY and CUSTOM"));
  CHECK_THAT(ErrorOf(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: custom}
spec: {action: CUSTOM, rules: [{}]}
)"),
             Catch::Contains("spec.provider.name: required for action CUSTOM"));
}

}  // namespace
}  // namespace meshpilot::convert
