#include "controlplane/convert/mesh_state_builder.h"

#include <catch2/catch.hpp>

namespace meshpilot::convert {
namespace {

model::MeshState BuildFrom(const std::string& yaml) {
  absl::StatusOr<ParsedStream> stream = ParseYamlStream(yaml, "mesh.yaml");
  INFO(stream.status().ToString());
  REQUIRE(stream.ok());
  return BuildMeshState(stream->objects, stream->errors);
}

constexpr char kReviews[] = R"(
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: prod}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-2
  namespace: prod
  labels:
    app: reviews
    version: v2
    topology.kubernetes.io/region: us-east
    topology.kubernetes.io/zone: us-east-1b
spec: {serviceAccountName: bookinfo-reviews}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-1
  namespace: prod
  labels: {app: reviews, version: v1, istio-locality: us-east.us-east-1a}
spec: {serviceAccountName: bookinfo-reviews}
status: {podIP: 10.0.0.1}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-xyz
  namespace: prod
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
endpoints:
- addresses: [10.0.0.2]
  targetRef: {kind: Pod, name: reviews-2, namespace: prod}
- addresses: [10.0.0.1]
  targetRef: {kind: Pod, name: reviews-1, namespace: prod}
  zone: ignored-when-the-pod-has-a-locality
- addresses: [10.0.0.3]
  conditions: {ready: false}
  zone: us-east-1c
ports: [{name: http, port: 9080}, {name: admin, port: 9901}]
)";

TEST_CASE("EndpointSlices are flattened and joined with their pods", "[mesh_state]") {
  model::MeshState state = BuildFrom(kReviews);
  CHECK(state.errors.empty());
  REQUIRE(state.services.contains("prod/reviews"));
  const std::vector<model::Endpoint>& endpoints =
      state.EndpointsOf(state.services.at("prod/reviews"));
  REQUIRE(endpoints.size() == 6);  // 3 addresses x 2 ports, sorted by address then port

  CHECK(endpoints[0].address == "10.0.0.1");
  CHECK(endpoints[0].port == 9080);
  CHECK(endpoints[0].port_name == "http");
  CHECK(endpoints[1].address == "10.0.0.1");
  CHECK(endpoints[1].port == 9901);
  CHECK(endpoints[0].labels.at("version") == "v1");
  CHECK(endpoints[0].service_account == "bookinfo-reviews");
  CHECK(endpoints[0].pod_name == "reviews-1");
  CHECK(endpoints[0].namespace_ == "prod");
  CHECK(endpoints[0].locality == model::Locality{"us-east", "us-east-1a", ""});

  CHECK(endpoints[2].address == "10.0.0.2");
  CHECK(endpoints[2].labels.at("version") == "v2");
  CHECK(endpoints[2].locality == model::Locality{"us-east", "us-east-1b", ""});

  // No pod: no labels, the slice's zone, and its readiness.
  CHECK(endpoints[4].address == "10.0.0.3");
  CHECK(endpoints[4].labels.empty());
  CHECK(endpoints[4].locality.zone == "us-east-1c");
  CHECK_FALSE(endpoints[4].ready);
  CHECK(endpoints[0].ready);
}

TEST_CASE("Endpoints objects are used when a service has no slices", "[mesh_state]") {
  model::MeshState state = BuildFrom(R"(
apiVersion: v1
kind: Pod
metadata: {name: ratings-1, labels: {app: ratings}}
spec: {serviceAccountName: ratings}
status: {podIP: 10.0.1.1}
---
apiVersion: v1
kind: Endpoints
metadata: {name: ratings}
subsets:
- addresses: [{ip: 10.0.1.1}]
  ports: [{port: 9080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: details}
subsets:
- addresses: [{ip: 10.0.2.1}]
  ports: [{port: 9080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: details-1, labels: {kubernetes.io/service-name: details}}
addressType: IPv4
endpoints: [{addresses: [10.0.2.2]}]
ports: [{port: 9080}]
)");
  const std::vector<model::Endpoint>& ratings = state.endpoints.at("default/ratings");
  REQUIRE(ratings.size() == 1);
  // Without a targetRef, the pod is found by address, as Istio does.
  CHECK(ratings[0].labels.at("app") == "ratings");
  CHECK(ratings[0].service_account == "ratings");
  const std::vector<model::Endpoint>& details = state.endpoints.at("default/details");
  REQUIRE(details.size() == 1);
  CHECK(details[0].address == "10.0.2.2");
}

TEST_CASE("One bad document does not drop the others", "[mesh_state]") {
  absl::StatusOr<ParsedStream> stream = ParseYamlStream(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: good-before, namespace: prod}
spec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad, namespace: prod}
spec:
  hosts: [b]
  http: [{route: [{destination: {host: b}, weight: -5}], timeout: soon}]
---
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: good-after}
spec: {host: a}
)",
                                                        "dir/mesh.yaml");
  REQUIRE(stream.ok());
  REQUIRE(stream->objects.size() == 2);
  CHECK(stream->objects[0].origin == "dir/mesh.yaml[0]");
  CHECK(stream->objects[1].origin == "dir/mesh.yaml[3]");
  REQUIRE(stream->errors.size() == 1);
  const model::ConfigError& error = stream->errors[0];
  CHECK(error.origin == "dir/mesh.yaml[1]");
  CHECK(error.kind == "VirtualService");
  CHECK(error.namespace_ == "prod");
  CHECK(error.name == "bad");
  CHECK_THAT(error.message, Catch::Contains("spec.http[0].route[0].weight: must be >= 0"));
  CHECK_THAT(error.message, Catch::Contains("spec.http[0].timeout: invalid duration"));

  model::MeshState state = BuildMeshState(stream->objects, stream->errors);
  CHECK(state.virtual_services.contains("prod/good-before"));
  CHECK(state.destination_rules.contains("default/good-after"));
  CHECK_FALSE(state.virtual_services.contains("prod/bad"));
  CHECK(state.errors.size() == 1);
}

TEST_CASE("Invalid YAML is reported with line and column", "[mesh_state]") {
  absl::StatusOr<ParsedStream> stream =
      ParseYamlStream("apiVersion: v1\nkind: Service\nmetadata: {name: [a\n", "bad.yaml");
  REQUIRE_FALSE(stream.ok());
  CHECK_THAT(std::string(stream.status().message()), Catch::Contains("invalid YAML at line"));
  CHECK_THAT(std::string(stream.status().message()), Catch::Contains("column"));
}

TEST_CASE("A duplicate object is reported and the first one kept", "[mesh_state]") {
  model::MeshState state = BuildFrom(R"(
apiVersion: v1
kind: Namespace
metadata: {name: prod}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec: {host: first}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: r}
spec: {host: second}
)");
  CHECK(state.namespaces.contains("prod"));
  CHECK(state.destination_rules.at("default/r").host == "first");
  REQUIRE(state.errors.size() == 1);
  CHECK(state.errors[0].origin == "mesh.yaml[2]");
  CHECK_THAT(state.errors[0].message, Catch::Contains("already defined by mesh.yaml[1]"));
}

}  // namespace
}  // namespace meshpilot::convert
