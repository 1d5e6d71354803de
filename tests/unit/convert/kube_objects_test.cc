#include <catch2/catch.hpp>

#include "controlplane/convert/kube_objects.h"
#include "tests/unit/convert/parse_test_util.h"

namespace meshpilot::convert {
namespace {

using testing::CheckErrors;
using testing::ErrorOf;
using testing::Parse;
using testing::ParseAs;

TEST_CASE("A Service parses with ports and a default namespace", "[kube]") {
  auto service = ParseAs<model::Service>(R"(
apiVersion: v1
kind: Service
metadata: {name: reviews, labels: {app: reviews}}
spec:
  clusterIP: 10.96.0.10
  selector: {app: reviews}
  ports:
  - {name: http-web, port: 80, targetPort: 8080}
  - {name: grpc, port: 9090, targetPort: grpc-port}
  - {name: metrics, port: 15014}
)");
  CHECK(service.meta.Key() == "default/reviews");
  CHECK(service.cluster_ip == "10.96.0.10");
  CHECK(service.selector.at("app") == "reviews");
  REQUIRE(service.ports.size() == 3);
  CHECK(service.ports[0].target_port == 8080);
  CHECK(service.ports[0].protocol == model::Protocol::kHttp);
  CHECK(service.ports[1].target_port_name == "grpc-port");
  CHECK(service.ports[1].protocol == model::Protocol::kGrpc);
  CHECK(service.ports[2].target_port == 15014);  // targetPort defaults to port
  CHECK(service.ports[2].protocol == model::Protocol::kTcp);
}

TEST_CASE("Port protocols are derived like Istio", "[kube]") {
  using model::Protocol;
  CHECK(DeriveProtocol("http", "TCP", std::nullopt) == Protocol::kHttp);
  CHECK(DeriveProtocol("http-web", "TCP", std::nullopt) == Protocol::kHttp);
  CHECK(DeriveProtocol("HTTP2-api", "TCP", std::nullopt) == Protocol::kHttp2);
  CHECK(DeriveProtocol("grpc", "TCP", std::nullopt) == Protocol::kGrpc);
  CHECK(DeriveProtocol("grpc-web", "TCP", std::nullopt) == Protocol::kHttp);
  CHECK(DeriveProtocol("tcp-db", "TCP", std::nullopt) == Protocol::kTcp);
  CHECK(DeriveProtocol("https", "TCP", std::nullopt) == Protocol::kHttps);
  CHECK(DeriveProtocol("tls-passthrough", "TCP", std::nullopt) == Protocol::kTls);
  CHECK(DeriveProtocol("web", "TCP", std::nullopt) == Protocol::kTcp);  // unknown name
  CHECK(DeriveProtocol("httpfoo", "TCP", std::nullopt) == Protocol::kTcp);
  CHECK(DeriveProtocol("", "TCP", std::nullopt) == Protocol::kTcp);
  CHECK(DeriveProtocol("http", "UDP", std::nullopt) == Protocol::kUdp);
  // appProtocol wins over the name.
  CHECK(DeriveProtocol("tcp-x", "TCP", "grpc") == Protocol::kGrpc);
  CHECK(DeriveProtocol("web", "TCP", "http2") == Protocol::kHttp2);
  CHECK(DeriveProtocol("web", "TCP", "kubernetes.io/h2c") == Protocol::kHttp2);
  CHECK(DeriveProtocol("web", "TCP", "kubernetes.io/wss") == Protocol::kHttps);
  CHECK(DeriveProtocol("tcp-x", "TCP", "tls") == Protocol::kTls);
  CHECK(DeriveProtocol("http", "TCP", "tcp") == Protocol::kTcp);
}

TEST_CASE("Bad service ports are reported with their paths", "[kube]") {
  std::string error = ErrorOf(R"(
apiVersion: v1
kind: Service
metadata: {name: a, namespace: ns}
spec:
  ports:
  - {name: http, port: 0}
  - {name: http, port: 70000, targetPort: -1}
  - {name: tcp}
)");
  CheckErrors(error, {
      "spec.ports[0].port: must be between 1 and 65535",
      "spec.ports[1].name: duplicate port name",
      "spec.ports[1].port: must be between 1 and 65535",
      "spec.ports[1].targetPort: must be between 1 and 65535",
      "spec.ports[2].port: required",
  });
}

TEST_CASE("A port number appears once per protocol", "[kube]") {
  // Found by fuzz_yaml_stream: two ports 80/TCP made two clusters of one name.
  std::string error = ErrorOf(R"(
apiVersion: v1
kind: Service
metadata: {name: a, namespace: ns}
spec:
  ports:
  - {name: http, port: 80}
  - {name: grpc, port: 80}
  - {name: dns, port: 80, protocol: UDP}
)");
  CheckErrors(error, {"spec.ports[1].port: duplicate port 80/TCP"});
  CHECK(error.find("spec.ports[2]") == std::string::npos);
}

TEST_CASE("Endpoints parse ready and not-ready addresses", "[kube]") {
  auto endpoints = ParseAs<ServiceEndpoints>(R"(
apiVersion: v1
kind: Endpoints
metadata: {name: reviews, namespace: prod}
subsets:
- addresses:
  - ip: 10.0.0.1
    targetRef: {kind: Pod, name: reviews-1}
  notReadyAddresses:
  - ip: 10.0.0.2
  ports:
  - {name: http, port: 8080}
)");
  CHECK(endpoints.kind == ServiceEndpoints::Kind::kEndpoints);
  CHECK(endpoints.service_name == "reviews");
  REQUIRE(endpoints.groups.size() == 1);
  const auto& addresses = endpoints.groups[0].addresses;
  REQUIRE(addresses.size() == 2);
  CHECK(addresses[0].ready);
  CHECK(addresses[0].pod_name == "reviews-1");
  CHECK(addresses[0].pod_namespace == "prod");
  CHECK_FALSE(addresses[1].ready);
  CHECK(endpoints.groups[0].ports[0].port == 8080);
}

TEST_CASE("An EndpointSlice parses its service, conditions and zones", "[kube]") {
  auto slice = ParseAs<ServiceEndpoints>(R"(
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-abc
  namespace: prod
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
endpoints:
- addresses: [10.0.0.1]
  zone: us-east-1a
  targetRef: {kind: Pod, name: reviews-1, namespace: prod}
- addresses: [10.0.0.2]
  conditions: {ready: false}
ports:
- {name: http, port: 8080, protocol: TCP}
)");
  CHECK(slice.kind == ServiceEndpoints::Kind::kEndpointSlice);
  CHECK(slice.service_name == "reviews");
  const auto& addresses = slice.groups.at(0).addresses;
  REQUIRE(addresses.size() == 2);
  CHECK(addresses[0].ready);  // no conditions: ready
  CHECK(addresses[0].zone == "us-east-1a");
  CHECK(addresses[0].pod_name == "reviews-1");
  CHECK_FALSE(addresses[1].ready);
}

TEST_CASE("An EndpointSlice without its service label is rejected", "[kube]") {
  CHECK_THAT(ErrorOf(R"(
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1]}]
)"),
             Catch::Contains("metadata.labels[kubernetes.io/service-name]: required"));
}

TEST_CASE("A Pod parses identity, address and locality", "[kube]") {
  auto pod = ParseAs<model::Pod>(R"(
apiVersion: v1
kind: Pod
metadata:
  name: reviews-1
  namespace: prod
  labels: {app: reviews, istio-locality: us-east.us-east-1a.rack4}
spec: {serviceAccountName: reviews-sa, nodeName: node-1, containers: [{name: app}]}
status: {podIP: 10.0.0.1, phase: Running}
)");
  CHECK(pod.meta.Key() == "prod/reviews-1");
  CHECK(pod.service_account == "reviews-sa");
  CHECK(pod.node_name == "node-1");
  CHECK(pod.ip == "10.0.0.1");
  CHECK(pod.locality == model::Locality{"us-east", "us-east-1a", "rack4"});

  auto topology = ParseAs<model::Pod>(R"(
apiVersion: v1
kind: Pod
metadata:
  name: p
  labels: {topology.kubernetes.io/region: eu, topology.kubernetes.io/zone: eu-1b}
)");
  CHECK(topology.service_account == "default");
  CHECK(topology.locality == model::Locality{"eu", "eu-1b", ""});
}

TEST_CASE("A Namespace parses without a namespace of its own", "[kube]") {
  auto ns = ParseAs<model::Namespace>(R"(
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {istio-injection: enabled}}
)");
  CHECK(ns.meta.name == "prod");
  CHECK(ns.meta.namespace_.empty());
  CHECK(ns.meta.labels.at("istio-injection") == "enabled");
}

TEST_CASE("Unknown kinds and missing identity are rejected", "[kube]") {
  CHECK_THAT(ErrorOf("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\n"),
             Catch::Contains("kind: unsupported kind \"Gateway\" of apiVersion"));
  CHECK_THAT(ErrorOf("apiVersion: v2\nkind: Service\nmetadata: {name: s}\n"),
             Catch::Contains("unsupported kind"));
  CHECK_THAT(ErrorOf("kind: Service\nmetadata: {name: s}\n"),
             Catch::Contains("apiVersion: required"));
  CHECK_THAT(ErrorOf("apiVersion: v1\nkind: Service\nmetadata: {}\n"),
             Catch::Contains("metadata.name: required"));
  CHECK_THAT(ErrorOf("[1, 2]"), Catch::Contains("must hold one object"));
}

}  // namespace
}  // namespace meshpilot::convert
