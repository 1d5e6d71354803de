#include <catch2/catch.hpp>
#include <string>
#include <variant>

#include "controlplane/convert/object.h"

namespace meshpilot::convert {
namespace {

constexpr char kValid[] = R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop, resourceVersion: "812"}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
)";

constexpr char kInvalid[] = R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop, resourceVersion: "813"}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}, weight: -5}]
)";

TEST_CASE("an accepted version serves") {
  ServedVersion served = ReadServedVersion(YAML::Load(kValid), "kube", {});
  REQUIRE(served.accepted);
  CHECK(served.accepted->origin == "kube");
  CHECK(MetaOf(served.accepted->object).resource_version == "812");
  CHECK_FALSE(served.error);
  CHECK(served.serving_note.empty());
}

TEST_CASE("a rejected version is described by its kind, namespace and name") {
  ServedVersion served = ReadServedVersion(YAML::Load(kInvalid), "kube", {});
  CHECK_FALSE(served.accepted);
  REQUIRE(served.error);
  CHECK(served.error->origin == "kube");
  CHECK(served.error->kind == "VirtualService");
  CHECK(served.error->namespace_ == "shop");
  CHECK(served.error->name == "reviews");
  CHECK(served.error->message == "spec.http[0].route[0].weight: must be >= 0");
  CHECK(served.problems == served.error->message);
}

TEST_CASE("a rejected version leaves the last accepted one of the same object serving") {
  ServedVersion before = ReadServedVersion(YAML::Load(kValid), "kube", {});
  REQUIRE(before.accepted);
  ServedVersion served = ReadServedVersion(YAML::Load(kInvalid), "kube", {*before.accepted});
  REQUIRE(served.accepted);
  CHECK(MetaOf(served.accepted->object).resource_version == "812");
  CHECK(served.serving_note == "still serving its last valid version (resourceVersion 812)");
  REQUIRE(served.error);
  CHECK(served.error->message ==
        "spec.http[0].route[0].weight: must be >= 0; still serving its last valid version "
        "(resourceVersion 812)");

  // Another object's accepted version is no substitute.
  std::string other = kValid;
  other.replace(other.find("name: reviews"), 13, "name: ratings");
  ServedVersion unrelated = ReadServedVersion(YAML::Load(other), "kube", {});
  served = ReadServedVersion(YAML::Load(kInvalid), "kube", {*unrelated.accepted});
  CHECK_FALSE(served.accepted);
  CHECK(served.serving_note.empty());
}

TEST_CASE("in a stream, a version kept for a rejected document yields to a valid one") {
  ParsedStream first = *ParseYamlStream(kValid, "a.yaml");
  REQUIRE(first.objects.size() == 1);
  // The same object, now invalid, and valid again further down the same file.
  std::string edited = std::string(kInvalid) + "---\n" + kValid;
  edited.replace(edited.rfind("\"812\""), 5, "\"814\"");
  absl::StatusOr<ParsedStream> second = ParseYamlStream(edited, "a.yaml", first.objects);
  REQUIRE(second.ok());
  REQUIRE(second->objects.size() == 1);
  CHECK(second->objects[0].origin == "a.yaml[1]");
  CHECK(MetaOf(second->objects[0].object).resource_version == "814");
  REQUIRE(second->errors.size() == 1);
  CHECK(second->errors[0].origin == "a.yaml[0]");
  CHECK(second->errors[0].message == "spec.http[0].route[0].weight: must be >= 0");
}

}  // namespace
}  // namespace meshpilot::convert
