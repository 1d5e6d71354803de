#include <catch2/catch.hpp>

#include "controlplane/cache/snapshot_cache.h"
#include "tests/testing/mesh_builder.h"
#include "translator/http_connection_manager.h"

namespace meshpilot::cache {
namespace {

using model::Protocol;
using testing::AddService;
using testing::MakeEndpoint;
using testing::MakePort;
using testing::MakeService;

translator::ProxyInfo Proxy(const std::string& pod, const std::string& ns,
                           const std::string& ip = "10.0.0.1") {
  envoy::config::core::v3::Node node;
  node.set_id("sidecar~" + ip + "~" + pod + "." + ns + "~" + ns + ".svc.cluster.local");
  return *translator::ParseProxyInfo(node);
}

model::MeshStatePtr State(uint64_t version, const std::string& endpoint_ip) {
  auto state = std::make_shared<model::MeshState>();
  state->version = version;
  AddService(*state,
             MakeService("default", "web", "10.96.0.1", {MakePort("http", 80, Protocol::kHttp)}),
             {MakeEndpoint(endpoint_ip, 8080, "http")});
  return state;
}

TEST_CASE("resource versions are content hashes", "[resource]") {
  envoy::config::cluster::v3::Cluster a;
  a.set_name("a");
  a.mutable_connect_timeout()->set_seconds(1);
  envoy::config::cluster::v3::Cluster same = a;
  envoy::config::cluster::v3::Cluster other = a;
  other.mutable_connect_timeout()->set_seconds(2);
  ResourcePtr ra = MakeResource("a", a);
  CHECK(ra->version.size() == 16);
  CHECK(ra->version == MakeResource("a", same)->version);
  CHECK(ra->version != MakeResource("a", other)->version);
  CHECK(ra->body.type_url() == TypeUrl(ResourceType::kCluster));
  // Stable across processes and releases: pinned.
  CHECK(ContentHash("meshpilot") == "b6b208f2e18bf5c3");
}

TEST_CASE("type urls round-trip and push order is CDS, EDS, LDS, RDS", "[resource]") {
  for (ResourceType type : kPushOrder) CHECK(TypeFromUrl(TypeUrl(type)) == type);
  CHECK_FALSE(TypeFromUrl("type.googleapis.com/envoy.config.core.v3.Secret").has_value());
  CHECK(ShortName(kPushOrder[0]) == "cds");
  CHECK(ShortName(kPushOrder[3]) == "rds");
  CHECK(IsWildcardType(ResourceType::kListener));
  CHECK_FALSE(IsWildcardType(ResourceType::kRoute));
}

TEST_CASE("a snapshot refuses a listener whose route is missing", "[snapshot]") {
  translator::ProxyResources resources;
  envoy::config::listener::v3::Listener listener;
  listener.set_name("0.0.0.0_80");
  auto* filter = listener.add_filter_chains()->add_filters();
  filter->mutable_typed_config()->PackFrom(translator::RdsConnectionManager("x", "80"));
  resources.listeners.push_back(listener);
  auto snapshot = Snapshot::Build(resources, 1);
  REQUIRE_FALSE(snapshot.ok());
  CHECK(snapshot.status().ToString().find("missing route 80") != std::string::npos);

  envoy::config::route::v3::RouteConfiguration route;
  route.set_name("80");
  resources.routes.push_back(route);
  CHECK(Snapshot::Build(resources, 1).ok());
}

TEST_CASE("a snapshot refuses an EDS cluster without endpoints", "[snapshot]") {
  translator::ProxyResources resources;
  envoy::config::cluster::v3::Cluster cluster;
  cluster.set_name("outbound|80||web.default.svc.cluster.local");
  cluster.set_type(envoy::config::cluster::v3::Cluster::EDS);
  resources.clusters.push_back(cluster);
  auto snapshot = Snapshot::Build(resources, 1);
  REQUIRE_FALSE(snapshot.ok());
  CHECK(snapshot.status().ToString().find("missing endpoints") != std::string::npos);
}

TEST_CASE("no snapshot before the sources have synced", "[cache]") {
  SnapshotCache cache;
  auto snapshot = cache.SnapshotFor(Proxy("a", "default"));
  REQUIRE_FALSE(snapshot.ok());
  CHECK(absl::IsFailedPrecondition(snapshot.status()));
}

TEST_CASE("proxies of one class share one snapshot per state", "[cache]") {
  SnapshotCache cache;
  cache.SetState(State(1, "10.0.0.1"));
  auto a = cache.SnapshotFor(Proxy("a", "default"));
  auto b = cache.SnapshotFor(Proxy("b", "default"));
  auto other_ns = cache.SnapshotFor(Proxy("c", "other"));
  REQUIRE(a.ok());
  CHECK(a->get() == b->get());
  CHECK(a->get() != other_ns->get());
  CHECK((*a)->state_version() == 1);
}

TEST_CASE("workloads of one class share the outbound resources themselves", "[cache]") {
  SnapshotCache cache;
  cache.SetState(State(1, "10.0.0.1"));
  SnapshotPtr a = *cache.SnapshotFor(Proxy("a", "default", "10.1.0.1"));
  SnapshotPtr b = *cache.SnapshotFor(Proxy("b", "default", "10.1.0.2"));
  // Each workload has its own inbound side, so its own snapshot...
  CHECK(a.get() != b.get());
  // ...but the outbound resources are one object, translated and serialized once.
  const std::string cluster = "outbound|80||web.default.svc.cluster.local";
  CHECK(a->Resources(ResourceType::kCluster).at(cluster).get() ==
        b->Resources(ResourceType::kCluster).at(cluster).get());
  CHECK(a->Resources(ResourceType::kRoute).at("80").get() ==
        b->Resources(ResourceType::kRoute).at("80").get());
  CHECK(a->Resources(ResourceType::kListener).contains("virtualInbound"));
}

TEST_CASE("a new state changes only the versions of what changed", "[cache]") {
  SnapshotCache cache;
  cache.SetState(State(1, "10.0.0.1"));
  SnapshotPtr before = *cache.SnapshotFor(Proxy("a", "default"));
  cache.SetState(State(2, "10.0.0.2"));
  SnapshotPtr after = *cache.SnapshotFor(Proxy("a", "default"));
  CHECK(after->state_version() == 2);
  const std::string cluster = "outbound|80||web.default.svc.cluster.local";
  CHECK(before->Resources(ResourceType::kCluster).at(cluster)->version ==
        after->Resources(ResourceType::kCluster).at(cluster)->version);
  CHECK(before->Resources(ResourceType::kEndpoint).at(cluster)->version !=
        after->Resources(ResourceType::kEndpoint).at(cluster)->version);
}

}  // namespace
}  // namespace meshpilot::cache
