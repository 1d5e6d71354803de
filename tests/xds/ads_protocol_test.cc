// The ADS protocol as a proxy sees it: one rule per test, each over a real gRPC stream to an
// in-process AdsServer.

#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "controlplane/debug/debug_handler.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "nlohmann/json.hpp"
#include "tests/xds/ads_test_client.h"

namespace meshpilot::testing {
namespace {

using cache::ResourceType;
using envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
using nlohmann::json;

const xds::TypeStatus& TypeOf(const xds::StreamStatus& stream, ResourceType type) {
  return stream.types[static_cast<size_t>(type)];
}

std::set<std::string> NameSet(const DiscoveryResponse& response) {
  std::vector<std::string> names = ResourceNames(response);
  return {names.begin(), names.end()};
}

// The next response, which must be of `type_url`.
DiscoveryResponse ReadOf(AdsTestClient& client, const std::string& type_url) {
  std::optional<DiscoveryResponse> response = client.Read();
  REQUIRE(response.has_value());
  REQUIRE(response->type_url() == type_url);
  return *response;
}

// Subscribes to `type_url`, reads the answer and ACKs it.
DiscoveryResponse Subscribe(AdsTestClient& client, const std::string& type_url,
                            const std::vector<std::string>& names = {}) {
  REQUIRE(client.Send(type_url, names));
  DiscoveryResponse response = ReadOf(client, type_url);
  REQUIRE(client.Ack(response));
  return response;
}

std::vector<std::string> ClusterNames(int services) {
  std::vector<std::string> names;
  for (int i = 0; i < services; ++i) names.push_back(ClusterName("svc-" + std::to_string(i)));
  return names;
}

// Waits until the server has processed the client's ACK of `response`.
bool WaitForAck(const AdsTestServer& server, const DiscoveryResponse& response,
                const std::string& node_id = kSidecarNodeId) {
  ResourceType type = *cache::TypeFromUrl(response.type_url());
  return server.WaitForStream(
      [&](const xds::StreamStatus& stream) {
        return TypeOf(stream, type).acked_version == response.version_info() &&
               TypeOf(stream, type).sent_nonce == response.nonce();
      },
      node_id);
}

// Subscribes to every type in push order (EDS to the first `services` clusters, RDS to port
// 8080's routes) and waits for the server to have the routes' ACK; returns the routes.
DiscoveryResponse SubscribeAll(AdsTestServer& server, AdsTestClient& client, int services) {
  Subscribe(client, kCds);
  Subscribe(client, kEds, ClusterNames(services));
  Subscribe(client, kLds);
  DiscoveryResponse rds = Subscribe(client, kRds, {"8080"});
  REQUIRE(WaitForAck(server, rds));
  return rds;
}

// The /debug/syncz entry of `node_id`'s stream, as the debug endpoint answers it.
json SyncZOf(AdsTestServer& server, const std::string& node_id = kSidecarNodeId) {
  debug::DebugHandler handler(server.ads(), server.cache(), server.metrics(), [] { return true; });
  debug::DebugResponse response = handler.Handle("/debug/syncz", {});
  REQUIRE(response.status == 200);
  for (const json& entry : json::parse(response.body)) {
    if (entry["proxy"] == node_id) return entry;
  }
  FAIL("no syncz entry for " << node_id);
  return {};
}

// The value of meshpilot_xds_held_removals{type=`type`} in /metrics.
double HeldRemovals(AdsTestServer& server, const std::string& type) {
  std::string metrics = server.metrics().Render();
  std::string prefix = "meshpilot_xds_held_removals{type=\"" + type + "\"} ";
  size_t at = metrics.find(prefix);
  REQUIRE(at != std::string::npos);
  return std::stod(metrics.substr(at + prefix.size()));
}

// Waits until what `node_id`'s stream holds back of CDS and EDS is exactly `cds` and `eds`.
bool WaitForHeld(const AdsTestServer& server, const std::vector<std::string>& cds,
                 const std::vector<std::string>& eds, const std::string& node_id = kSidecarNodeId) {
  return server.WaitForStream(
      [&](const xds::StreamStatus& stream) {
        return TypeOf(stream, ResourceType::kCluster).held == cds &&
               TypeOf(stream, ResourceType::kEndpoint).held == eds;
      },
      node_id);
}

bool WaitForRejected(const AdsTestServer& server, ResourceType type,
                     const std::string& node_id = kSidecarNodeId) {
  return server.WaitForStream(
      [&](const xds::StreamStatus& stream) { return TypeOf(stream, type).rejected; }, node_id);
}

// Waits until the server has no stream of `node_id` left.
bool WaitForNoStream(const AdsTestServer& server, const std::string& node_id = kSidecarNodeId) {
  auto deadline = std::chrono::steady_clock::now() + kReadTimeout;
  while (server.StreamOf(node_id)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace

TEST_CASE("ads: nothing is sent before the first state and pending requests are answered after it") {
  AdsTestServer server;
  AdsTestClient client(server.port());
  REQUIRE(client.Send(kCds, {}));
  REQUIRE(client.Send(kLds, {}));
  REQUIRE(server.WaitForStream([](const xds::StreamStatus& stream) {
    return TypeOf(stream, ResourceType::kCluster).subscribed &&
           TypeOf(stream, ResourceType::kListener).subscribed;
  }));
  // Sources have not synced: an empty CDS/LDS now would wipe the proxy's config.
  CHECK(client.ExpectNothing());
  CHECK(server.StreamOf()->types[0].sent_version.empty());

  server.SetState(MakeMesh(2));
  DiscoveryResponse cds = ReadOf(client, kCds);
  CHECK(cds.resources_size() == 5);  // 2 services + PassthroughCluster + BlackHoleCluster
  DiscoveryResponse lds = ReadOf(client, kLds);
  CHECK(lds.resources_size() == 3);  // 0.0.0.0_8080 + virtualOutbound
}

TEST_CASE("ads: CDS and LDS are wildcard and each type has its own version and nonce") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(3);
  AddService(mesh, "db", 5432, model::Protocol::kTcp, 2, "10.96.100.1");
  server.SetState(mesh);
  AdsTestClient client(server.port());

  DiscoveryResponse cds = Subscribe(client, kCds);
  CHECK(NameSet(cds) == std::set<std::string>{"BlackHoleCluster", "InboundPassthroughClusterIpv4", "PassthroughCluster",
                                              ClusterName("db", 5432), ClusterName("svc-0"),
                                              ClusterName("svc-1"), ClusterName("svc-2")});
  DiscoveryResponse lds = Subscribe(client, kLds);
  CHECK(NameSet(lds) ==
        std::set<std::string>{"0.0.0.0_8080", "10.96.100.1_5432", "virtualInbound", "virtualOutbound"});
  CHECK_FALSE(cds.version_info().empty());
  CHECK_FALSE(lds.version_info().empty());
  CHECK(cds.version_info() != lds.version_info());
  CHECK_FALSE(cds.nonce().empty());
  CHECK(cds.nonce() != lds.nonce());

  // "*" is the explicit spelling of the same wildcard subscription.
  AdsTestClient star(server.port(),
                     {.node = MakeNode("sidecar~10.0.0.2~app-2.default~default.svc.cluster.local")});
  DiscoveryResponse star_cds = Subscribe(star, kCds, {"*"});
  CHECK(NameSet(star_cds) == NameSet(cds));
  CHECK(star_cds.version_info() == cds.version_info());

  // A change that only touches listeners (a TCP service's clusterIP) moves only LDS's version.
  REQUIRE(WaitForAck(server, lds));
  AddService(mesh, "db", 5432, model::Protocol::kTcp, 2, "10.96.100.2");
  server.SetState(mesh);
  DiscoveryResponse lds2 = ReadOf(client, kLds);
  CHECK(NameSet(lds2) ==
        std::set<std::string>{"0.0.0.0_8080", "10.96.100.2_5432", "virtualInbound", "virtualOutbound"});
  CHECK(lds2.version_info() != lds.version_info());
  CHECK(lds2.nonce() != lds.nonce());
  CHECK(client.ExpectNothing());
  std::optional<xds::StreamStatus> stream = server.StreamOf();
  REQUIRE(stream);
  CHECK(TypeOf(*stream, ResourceType::kCluster).sent_version == cds.version_info());
  CHECK(TypeOf(*stream, ResourceType::kCluster).acked_version == cds.version_info());
  CHECK(TypeOf(*stream, ResourceType::kListener).sent_version == lds2.version_info());
}

TEST_CASE("ads: an empty CDS/LDS list after named ones unsubscribes instead of being a wildcard") {
  // xDS: an empty list means "*" only until the client has named resources on the stream
  // (even "*"); after that it means "nothing". gRPC clients send it when their last watch
  // of a type goes away.
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(3);
  server.SetState(mesh);
  const std::string node_id = "sidecar~10.0.0.9~grpc-client.default~default.svc.cluster.local";
  AdsTestClient client(server.port(), {.node = MakeNode(node_id, "grpc")});
  const std::string listener = "svc-0.default.svc.cluster.local:8080";
  DiscoveryResponse lds = Subscribe(client, kLds, {listener});
  REQUIRE(NameSet(lds) == std::set<std::string>{listener});

  REQUIRE(client.Send(kLds, {}, lds.version_info(), lds.nonce()));
  DiscoveryResponse none = ReadOf(client, kLds);
  CHECK(none.resources_size() == 0);
  REQUIRE(client.Ack(none));
  REQUIRE(WaitForAck(server, none, node_id));
  std::optional<xds::StreamStatus> stream = server.StreamOf(node_id);
  REQUIRE(stream);
  CHECK_FALSE(TypeOf(*stream, ResourceType::kListener).wildcard);

  // Nothing subscribed: new services do not reach this client.
  AddService(mesh, "web", 9090, model::Protocol::kGrpc);
  server.SetState(mesh);
  CHECK(client.ExpectNothing());

  // The same for an explicit "*" that is later cleared, on a sidecar.
  AdsTestClient sidecar(server.port());
  DiscoveryResponse cds = Subscribe(sidecar, kCds, {"*"});
  CHECK(cds.resources_size() == 7);
  REQUIRE(sidecar.Send(kCds, {}, cds.version_info(), cds.nonce()));
  DiscoveryResponse cleared = ReadOf(sidecar, kCds);
  CHECK(cleared.resources_size() == 0);
}

TEST_CASE("ads: an ACK produces no resend") {
  AdsTestServer server;
  server.SetState(MakeMesh(2));
  AdsTestClient client(server.port());
  DiscoveryResponse cds = Subscribe(client, kCds);
  DiscoveryResponse eds = Subscribe(client, kEds, ClusterNames(2));
  DiscoveryResponse lds = Subscribe(client, kLds);
  DiscoveryResponse rds = Subscribe(client, kRds, {"8080"});
  CHECK(client.ExpectNothing());
  REQUIRE(WaitForAck(server, rds));
  std::optional<xds::StreamStatus> stream = server.StreamOf();
  REQUIRE(stream);
  for (const DiscoveryResponse* response : {&cds, &eds, &lds, &rds}) {
    const xds::TypeStatus& status = TypeOf(*stream, *cache::TypeFromUrl(response->type_url()));
    CHECK(status.acked_version == response->version_info());
    CHECK(status.pushes == 1);
  }
}

TEST_CASE("ads: pushing an unchanged state sends nothing") {
  AdsTestServer server;
  server.SetState(MakeMesh(2));
  AdsTestClient client(server.port());
  DiscoveryResponse rds = SubscribeAll(server, client, 2);

  server.SetState(MakeMesh(2));  // a new state version with the same content
  CHECK(client.ExpectNothing());
}

TEST_CASE("ads: a change of endpoints only sends only EDS") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(2);
  server.SetState(mesh);
  AdsTestClient client(server.port());
  Subscribe(client, kCds);
  DiscoveryResponse eds = Subscribe(client, kEds, ClusterNames(2));
  Subscribe(client, kLds);
  DiscoveryResponse rds = Subscribe(client, kRds, {"8080"});
  REQUIRE(WaitForAck(server, rds));

  mesh.endpoints["default/svc-0"].pop_back();
  server.SetState(mesh);
  DiscoveryResponse eds2 = ReadOf(client, kEds);
  CHECK(eds2.version_info() != eds.version_info());
  // State of the world for the subscribed names: the unchanged one comes along.
  CHECK(NameSet(eds2) == std::set<std::string>{ClusterName("svc-0"), ClusterName("svc-1")});
  REQUIRE(client.Ack(eds2));
  CHECK(client.ExpectNothing());
}

TEST_CASE("ads: a NACKed version is never resent and is reported while a newer one is sent") {
  AdsTestServer server;
  server.SetState(MakeMesh(2));
  AdsTestClient client(server.port());
  DiscoveryResponse v1 = Subscribe(client, kCds);

  server.SetState(MakeMesh(3));
  DiscoveryResponse v2 = ReadOf(client, kCds);
  REQUIRE(v2.version_info() != v1.version_info());
  REQUIRE(client.Nack(v2, "cluster outbound|8080||svc-2: unsupported lb policy"));
  REQUIRE(server.WaitForStream([&](const xds::StreamStatus& stream) {
    return TypeOf(stream, ResourceType::kCluster).rejects == 1;
  }));
  CHECK(client.ExpectNothing());  // not resent in a loop

  std::optional<xds::StreamStatus> stream = server.StreamOf();
  REQUIRE(stream);
  const xds::TypeStatus& cds = TypeOf(*stream, ResourceType::kCluster);
  CHECK(cds.nack_error == "cluster outbound|8080||svc-2: unsupported lb policy");
  CHECK(cds.nacked_version == v2.version_info());
  CHECK(cds.acked_version == v1.version_info());
  CHECK_THAT(server.metrics().Render(),
             Catch::Contains("pilot_total_xds_rejects{type=\"cds\"} 1\n"));

  // The same content again (new state version) is still the rejected version: nothing.
  server.SetState(MakeMesh(3));
  CHECK(client.ExpectNothing());

  // Different content is a new version and goes out.
  server.SetState(MakeMesh(4));
  DiscoveryResponse v3 = ReadOf(client, kCds);
  CHECK(v3.version_info() != v2.version_info());
  CHECK(v3.resources_size() == 7);
  REQUIRE(client.Ack(v3));
  REQUIRE(WaitForAck(server, v3));
  stream = server.StreamOf();
  REQUIRE(stream);
  CHECK(TypeOf(*stream, ResourceType::kCluster).nack_error.empty());
}

TEST_CASE("ads: a change touching all four types arrives in the order CDS EDS LDS RDS") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(2);
  server.SetState(mesh);
  AdsTestClient client(server.port());
  DiscoveryResponse rds = SubscribeAll(server, client, 2);

  // New HTTP service (CDS + route "8080"), a new TCP listener (LDS), svc-0's endpoints (EDS).
  AddService(mesh, "web", 8080, model::Protocol::kHttp);
  AddService(mesh, "db", 5432, model::Protocol::kTcp, 2, "10.96.100.1");
  mesh.endpoints["default/svc-0"].pop_back();
  server.SetState(mesh);

  std::vector<std::string> order;
  for (int i = 0; i < 4; ++i) {
    std::optional<DiscoveryResponse> response = client.Read();
    REQUIRE(response);
    order.push_back(response->type_url());
    REQUIRE(client.Ack(*response));
  }
  CHECK(order == std::vector<std::string>{kCds, kEds, kLds, kRds});
  CHECK(client.ExpectNothing());
}

TEST_CASE("ads: a removed cluster and its endpoints leave only after the routes that named it") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(3);
  server.SetState(mesh);
  AdsTestClient client(server.port());
  DiscoveryResponse rds = SubscribeAll(server, client, 3);

  // svc-1 is replaced by web in one change: web arrives at once, svc-1 stays with the client
  // while the route configuration that names it is replaced (make before break).
  RemoveService(mesh, "svc-1");
  AddService(mesh, "web", 8080, model::Protocol::kHttp);
  server.SetState(mesh);
  DiscoveryResponse cds2 = ReadOf(client, kCds);
  CHECK(NameSet(cds2).contains(ClusterName("web")));
  CHECK(NameSet(cds2).contains(ClusterName("svc-1")));
  DiscoveryResponse eds2 = ReadOf(client, kEds);
  CHECK(NameSet(eds2) == std::set<std::string>{ClusterName("svc-0"), ClusterName("svc-1"),
                                               ClusterName("svc-2")});
  REQUIRE(client.Ack(cds2));
  REQUIRE(client.Ack(eds2));
  DiscoveryResponse rds2 = ReadOf(client, kRds);
  CHECK(rds2.version_info() != rds.version_info());
  CHECK(client.ExpectNothing());  // nothing is removed before the new routes are ACKed

  REQUIRE(client.Ack(rds2));
  DiscoveryResponse cds3 = ReadOf(client, kCds);
  CHECK(NameSet(cds3).contains(ClusterName("web")));
  CHECK_FALSE(NameSet(cds3).contains(ClusterName("svc-1")));
  DiscoveryResponse eds3 = ReadOf(client, kEds);
  CHECK(NameSet(eds3) == std::set<std::string>{ClusterName("svc-0"), ClusterName("svc-2")});
  REQUIRE(client.Ack(cds3));
  REQUIRE(client.Ack(eds3));
  CHECK(client.ExpectNothing());
  // The version of the final set is the state's own: a client connecting now sees the same.
  AdsTestClient fresh(server.port());
  CHECK(Subscribe(fresh, kCds).version_info() == cds3.version_info());
}

TEST_CASE("ads: a removed cluster stays while the client rejects the routes that replace it") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(2);
  server.SetState(mesh);
  AdsTestClient client(server.port());
  DiscoveryResponse rds = SubscribeAll(server, client, 2);

  RemoveService(mesh, "svc-1");
  server.SetState(mesh);
  // Clusters and endpoints keep svc-1 for now: the routes come first.
  DiscoveryResponse rds2 = ReadOf(client, kRds);
  // The client keeps serving its old routes, which name svc-1: svc-1 must stay with it.
  REQUIRE(client.Nack(rds2, "route_config 8080: rejected for the test"));
  CHECK(client.ExpectNothing());
  // Envoy asks again with the rejected response's nonce and the version it still holds (as
  // when a listener update adds a watch): that is no ACK of the rejected routes.
  REQUIRE(client.Send(kRds, {"8080"}, rds.version_info(), rds2.nonce()));
  CHECK(client.ExpectNothing());

  // A later route configuration the client accepts lets the removal through.
  AddService(mesh, "web", 8080, model::Protocol::kHttp);
  server.SetState(mesh);
  DiscoveryResponse cds3 = ReadOf(client, kCds);
  CHECK(NameSet(cds3).contains(ClusterName("svc-1")));
  REQUIRE(client.Ack(cds3));
  REQUIRE(client.Ack(ReadOf(client, kEds)));
  DiscoveryResponse rds3 = ReadOf(client, kRds);
  REQUIRE(client.Ack(rds3));
  DiscoveryResponse cds4 = ReadOf(client, kCds);
  CHECK_FALSE(NameSet(cds4).contains(ClusterName("svc-1")));
  CHECK(NameSet(cds4).contains(ClusterName("web")));
}

TEST_CASE("ads: held removals and rejected routes show in /debug/syncz and a gauge") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(2);
  server.SetState(mesh);
  AdsTestClient client(server.port());
  SubscribeAll(server, client, 2);
  CHECK(SyncZOf(server)["held"] == json::object());
  CHECK(HeldRemovals(server, "cds") == 0);

  RemoveService(mesh, "svc-1");
  server.SetState(mesh);
  DiscoveryResponse rds2 = ReadOf(client, kRds);
  // Held while the routes that stop naming svc-1 are on their way...
  const std::string svc1 = ClusterName("svc-1");
  REQUIRE(WaitForHeld(server, {svc1}, {svc1}));
  json sync = SyncZOf(server);
  CHECK(sync["held"] == json{{"cds", {svc1}}, {"eds", {svc1}}});
  CHECK(sync["rejected"] == json::array());
  CHECK(HeldRemovals(server, "cds") == 1);
  CHECK(HeldRemovals(server, "eds") == 1);

  // ...and while the client rejects them.
  REQUIRE(client.Nack(rds2, "route_config 8080: rejected for the test"));
  REQUIRE(WaitForRejected(server, ResourceType::kRoute));
  sync = SyncZOf(server);
  CHECK(sync["rejected"] == json{"rds"});
  CHECK(sync["types"]["rds"]["rejected"] == true);
  CHECK(sync["types"]["lds"]["rejected"] == false);
  CHECK(sync["types"]["rds"]["nack_error"] == "route_config 8080: rejected for the test");
  CHECK(sync["types"]["cds"]["held"] == json{svc1});
  CHECK(HeldRemovals(server, "cds") == 1);

  // Routes it accepts release svc-1, and the view says so.
  AddService(mesh, "web", 8080, model::Protocol::kHttp);
  server.SetState(mesh);
  REQUIRE(client.Ack(ReadOf(client, kCds)));
  REQUIRE(client.Ack(ReadOf(client, kEds)));
  REQUIRE(client.Ack(ReadOf(client, kRds)));
  DiscoveryResponse cds4 = ReadOf(client, kCds);
  CHECK_FALSE(NameSet(cds4).contains(svc1));
  REQUIRE(client.Ack(cds4));
  REQUIRE(client.Ack(ReadOf(client, kEds)));
  REQUIRE(WaitForHeld(server, {}, {}));
  sync = SyncZOf(server);
  CHECK(sync["held"] == json::object());
  CHECK(sync["rejected"] == json::array());
  CHECK(HeldRemovals(server, "cds") == 0);
  CHECK(HeldRemovals(server, "eds") == 0);
}

TEST_CASE("ads: pushes while the client rejects its routes hold only what its routes may name") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(2);
  server.SetState(mesh);
  AdsTestClient client(server.port());
  SubscribeAll(server, client, 2);
  RemoveService(mesh, "svc-1");
  server.SetState(mesh);
  REQUIRE(client.Nack(ReadOf(client, kRds), "route_config 8080: rejected for the test"));
  REQUIRE(WaitForRejected(server, ResourceType::kRoute));

  // Services come and go while the client keeps rejecting its routes (say, one broken
  // VirtualService nobody fixes): none of them piles up in what it holds.
  const std::string svc1 = ClusterName("svc-1");
  for (int round = 0; round < 3; ++round) {
    std::string name = "churn-" + std::to_string(round);
    INFO(name);
    AddService(mesh, name, 8080, model::Protocol::kHttp);
    server.SetState(mesh);
    DiscoveryResponse cds = ReadOf(client, kCds);
    CHECK(NameSet(cds).contains(ClusterName(name)));
    CHECK(NameSet(cds).contains(svc1));
    REQUIRE(client.Ack(cds));
    REQUIRE(client.Ack(ReadOf(client, kEds)));
    REQUIRE(client.Nack(ReadOf(client, kRds), "route_config 8080: rejected for the test"));

    RemoveService(mesh, name);
    server.SetState(mesh);
    // The routes it was last sent name the service (a client may apply part of a response it
    // rejects): it goes once the client has answered routes that do not.
    REQUIRE(client.Nack(ReadOf(client, kRds), "route_config 8080: rejected for the test"));
    cds = ReadOf(client, kCds);
    CHECK_FALSE(NameSet(cds).contains(ClusterName(name)));
    CHECK(NameSet(cds).contains(svc1));  // its last good routes still name svc-1
    REQUIRE(client.Ack(cds));
    REQUIRE(client.Ack(ReadOf(client, kEds)));
    REQUIRE(WaitForHeld(server, {svc1}, {svc1}));
    CHECK(HeldRemovals(server, "cds") == 1);
  }
  CHECK(client.ExpectNothing());

  // svc-1 comes back as it was: it is an ordinary cluster again, nothing is held.
  model::MeshState original = MakeMesh(2);
  mesh.services["default/svc-1"] = original.services["default/svc-1"];
  mesh.endpoints["default/svc-1"] = original.endpoints["default/svc-1"];
  server.SetState(mesh);
  DiscoveryResponse rds = ReadOf(client, kRds);
  REQUIRE(WaitForHeld(server, {}, {}));
  CHECK(HeldRemovals(server, "cds") == 0);
  CHECK(HeldRemovals(server, "eds") == 0);
  REQUIRE(client.Ack(rds));
  CHECK(client.ExpectNothing());
}

TEST_CASE("ads: a proxy that reconnects after rejecting its routes keeps what they name") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(2);
  server.SetState(mesh);
  DiscoveryResponse cds, eds, lds, rds, rejected;
  {
    AdsTestClient first(server.port());
    cds = Subscribe(first, kCds);
    eds = Subscribe(first, kEds, ClusterNames(2));
    lds = Subscribe(first, kLds);
    rds = Subscribe(first, kRds, {"8080"});
    REQUIRE(WaitForAck(server, rds));
    RemoveService(mesh, "svc-1");
    server.SetState(mesh);
    rejected = ReadOf(first, kRds);
    REQUIRE(first.Nack(rejected, "route_config 8080: rejected for the test"));
    REQUIRE(WaitForRejected(server, ResourceType::kRoute));
  }
  REQUIRE(WaitForNoStream(server));
  const std::string svc1 = ClusterName("svc-1");

  SECTION("it rejects the same routes again: svc-1 stays") {
    // Envoy reconnects asking for every type it has, with the versions it runs.
    AdsTestClient second(server.port());
    REQUIRE(second.Send(kCds, {}, cds.version_info()));
    REQUIRE(second.Send(kEds, ClusterNames(2), eds.version_info()));
    REQUIRE(second.Send(kLds, {}, lds.version_info()));
    REQUIRE(second.Send(kRds, {"8080"}, rds.version_info()));
    DiscoveryResponse cds2 = ReadOf(second, kCds);
    CHECK(NameSet(cds2).contains(svc1));
    DiscoveryResponse eds2 = ReadOf(second, kEds);
    CHECK(NameSet(eds2).contains(svc1));
    DiscoveryResponse lds2 = ReadOf(second, kLds);
    DiscoveryResponse rds2 = ReadOf(second, kRds);
    CHECK(rds2.version_info() == rejected.version_info());
    REQUIRE(second.Ack(cds2));
    REQUIRE(second.Ack(eds2));
    REQUIRE(second.Ack(lds2));
    REQUIRE(second.Nack(rds2, "route_config 8080: rejected for the test"));
    REQUIRE(server.WaitForStream([](const xds::StreamStatus& stream) {
      return TypeOf(stream, ResourceType::kRoute).rejects == 1;
    }));
    CHECK(second.ExpectNothing());
    CHECK(SyncZOf(server)["held"] == json{{"cds", {svc1}}, {"eds", {svc1}}});

    // Routes it accepts on the new stream let the removal through.
    AddService(mesh, "web", 8080, model::Protocol::kHttp);
    server.SetState(mesh);
    DiscoveryResponse cds3 = ReadOf(second, kCds);
    CHECK(NameSet(cds3).contains(svc1));
    REQUIRE(second.Ack(cds3));
    REQUIRE(second.Ack(ReadOf(second, kEds)));
    REQUIRE(second.Ack(ReadOf(second, kRds)));
    DiscoveryResponse cds4 = ReadOf(second, kCds);
    CHECK_FALSE(NameSet(cds4).contains(svc1));
    CHECK(NameSet(cds4).contains(ClusterName("web")));
  }

  SECTION("the state changed meanwhile and it accepts the new routes: svc-1 goes") {
    AddService(mesh, "web", 8080, model::Protocol::kHttp);
    server.SetState(mesh);
    AdsTestClient second(server.port());
    REQUIRE(second.Send(kCds, {}, cds.version_info()));
    REQUIRE(second.Send(kEds, ClusterNames(2), eds.version_info()));
    REQUIRE(second.Send(kLds, {}, lds.version_info()));
    REQUIRE(second.Send(kRds, {"8080"}, rds.version_info()));
    DiscoveryResponse cds2 = ReadOf(second, kCds);
    CHECK(NameSet(cds2).contains(svc1));  // its old routes run until it accepts new ones
    REQUIRE(second.Ack(cds2));
    REQUIRE(second.Ack(ReadOf(second, kEds)));
    REQUIRE(second.Ack(ReadOf(second, kLds)));
    DiscoveryResponse rds2 = ReadOf(second, kRds);
    CHECK(rds2.version_info() != rejected.version_info());
    REQUIRE(second.Ack(rds2));
    DiscoveryResponse cds3 = ReadOf(second, kCds);
    CHECK_FALSE(NameSet(cds3).contains(svc1));
    REQUIRE(second.Ack(cds3));
    REQUIRE(second.Ack(ReadOf(second, kEds)));
    REQUIRE(WaitForHeld(server, {}, {}));
  }

  // Another proxy was never concerned.
  AdsTestClient other(server.port(),
                      {.node = MakeNode("sidecar~10.0.0.2~app-2.default~default.svc.cluster.local")});
  CHECK_FALSE(NameSet(Subscribe(other, kCds)).contains(svc1));
}

TEST_CASE("ads: later types wait while an earlier type awaits its ACK") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(1);
  server.SetState(mesh);
  AdsTestClient client(server.port());
  Subscribe(client, kCds);
  DiscoveryResponse lds = Subscribe(client, kLds);
  REQUIRE(WaitForAck(server, lds));

  AddService(mesh, "db", 5432, model::Protocol::kTcp, 1, "10.96.100.1");
  server.SetState(mesh);
  DiscoveryResponse cds2 = ReadOf(client, kCds);  // not ACKed yet
  DiscoveryResponse lds2 = ReadOf(client, kLds);
  REQUIRE(client.Ack(lds2));
  REQUIRE(WaitForAck(server, lds2));

  // Clusters and listeners change again while CDS is still in flight: the listener that
  // names the new cluster must not overtake it.
  AddService(mesh, "cache", 6379, model::Protocol::kTcp, 1, "10.96.100.2");
  server.SetState(mesh);
  CHECK(client.ExpectNothing());

  REQUIRE(client.Ack(cds2));
  DiscoveryResponse cds3 = ReadOf(client, kCds);
  CHECK(NameSet(cds3).contains(ClusterName("cache", 6379)));
  DiscoveryResponse lds3 = ReadOf(client, kLds);
  CHECK(NameSet(lds3).contains("10.96.100.2_6379"));
}

TEST_CASE("ads: EDS is resent after a CDS change even when endpoints did not change") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(2);
  server.SetState(mesh);
  AdsTestClient client(server.port());
  DiscoveryResponse cds = Subscribe(client, kCds);
  DiscoveryResponse eds = Subscribe(client, kEds, ClusterNames(2));
  REQUIRE(WaitForAck(server, eds));

  AddService(mesh, "web", 8080, model::Protocol::kHttp);  // svc-0/svc-1 endpoints unchanged
  server.SetState(mesh);
  DiscoveryResponse cds2 = ReadOf(client, kCds);
  CHECK(cds2.version_info() != cds.version_info());
  DiscoveryResponse eds2 = ReadOf(client, kEds);
  CHECK(eds2.version_info() == eds.version_info());
  CHECK(eds2.nonce() != eds.nonce());
  CHECK(NameSet(eds2) == std::set<std::string>{ClusterName("svc-0"), ClusterName("svc-1")});
}

TEST_CASE("ads: a named RDS or EDS resource that does not exist yet is sent when it appears") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(1);
  server.SetState(mesh);
  AdsTestClient client(server.port());

  REQUIRE(client.Send(kRds, {"8080", "9090"}));
  DiscoveryResponse rds = ReadOf(client, kRds);
  CHECK(NameSet(rds) == std::set<std::string>{"8080"});
  REQUIRE(client.Ack(rds));
  REQUIRE(client.Send(kEds, {ClusterName("svc-0"), ClusterName("web", 9090)}));
  DiscoveryResponse eds = ReadOf(client, kEds);
  CHECK(NameSet(eds) == std::set<std::string>{ClusterName("svc-0")});
  REQUIRE(client.Ack(eds));
  REQUIRE(WaitForAck(server, eds));
  std::optional<xds::StreamStatus> stream = server.StreamOf();
  REQUIRE(stream);
  CHECK(TypeOf(*stream, ResourceType::kRoute).names ==
        std::set<std::string>{"8080", "9090"});  // still wanted

  AddService(mesh, "web", 9090, model::Protocol::kHttp);
  server.SetState(mesh);
  DiscoveryResponse eds2 = ReadOf(client, kEds);
  CHECK(NameSet(eds2) == std::set<std::string>{ClusterName("svc-0"), ClusterName("web", 9090)});
  DiscoveryResponse rds2 = ReadOf(client, kRds);
  CHECK(NameSet(rds2) == std::set<std::string>{"8080", "9090"});
}

TEST_CASE("ads: unsubscribing from a named resource is honoured") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(2);
  server.SetState(mesh);
  AdsTestClient client(server.port());
  DiscoveryResponse eds = Subscribe(client, kEds, ClusterNames(2));
  CHECK(eds.resources_size() == 2);

  // The ACK that drops svc-0 is answered with the smaller set.
  REQUIRE(client.Send(kEds, {ClusterName("svc-1")}, eds.version_info(), eds.nonce()));
  DiscoveryResponse eds2 = ReadOf(client, kEds);
  CHECK(NameSet(eds2) == std::set<std::string>{ClusterName("svc-1")});
  REQUIRE(client.Ack(eds2));
  REQUIRE(WaitForAck(server, eds2));
  std::optional<xds::StreamStatus> stream = server.StreamOf();
  REQUIRE(stream);
  CHECK(TypeOf(*stream, ResourceType::kEndpoint).names ==
        std::set<std::string>{ClusterName("svc-1")});

  // A change to what is no longer subscribed is not sent.
  mesh.endpoints["default/svc-0"].pop_back();
  server.SetState(mesh);
  CHECK(client.ExpectNothing());
}

TEST_CASE("ads: at most one un-ACKed response per type and then the newest state") {
  AdsTestServer server;
  server.SetState(MakeMesh(1));
  AdsTestClient client(server.port());
  REQUIRE(client.Send(kCds, {}));
  DiscoveryResponse v1 = ReadOf(client, kCds);
  CHECK(v1.resources_size() == 4);

  server.SetState(MakeMesh(2));
  server.SetState(MakeMesh(3));
  CHECK(client.ExpectNothing());

  REQUIRE(client.Ack(v1));
  DiscoveryResponse latest = ReadOf(client, kCds);
  CHECK(latest.resources_size() == 6);  // MakeMesh(3), not the intermediate MakeMesh(2)
  REQUIRE(client.Ack(latest));
  CHECK(client.ExpectNothing());
  REQUIRE(WaitForAck(server, latest));
  CHECK(TypeOf(*server.StreamOf(), ResourceType::kCluster).pushes == 2);
}

TEST_CASE("ads: a request carrying a stale nonce is ignored") {
  AdsTestServer server;
  server.SetState(MakeMesh(1));
  AdsTestClient client(server.port());
  DiscoveryResponse r1 = Subscribe(client, kCds);
  server.SetState(MakeMesh(2));
  DiscoveryResponse r2 = ReadOf(client, kCds);
  REQUIRE(r1.nonce() != r2.nonce());

  // A late NACK of r1 (its nonce is stale now) must not count as an answer to r2...
  REQUIRE(client.Send(kCds, {}, r1.version_info(), r1.nonce(), "late complaint about r1"));
  server.SetState(MakeMesh(3));
  CHECK(client.ExpectNothing());  // ...so r2 is still the one response in flight.

  REQUIRE(client.Ack(r2));
  DiscoveryResponse r3 = ReadOf(client, kCds);
  CHECK(r3.resources_size() == 6);
  std::optional<xds::StreamStatus> stream = server.StreamOf();
  REQUIRE(stream);
  CHECK(TypeOf(*stream, ResourceType::kCluster).rejects == 0);
  CHECK(TypeOf(*stream, ResourceType::kCluster).nacked_version.empty());
  CHECK(TypeOf(*stream, ResourceType::kCluster).nack_error.empty());
  CHECK(TypeOf(*stream, ResourceType::kCluster).acked_version == r2.version_info());
  CHECK_THAT(server.metrics().Render(),
             Catch::Contains("pilot_total_xds_rejects{type=\"cds\"} 0\n"));
}

TEST_CASE("ads: a client that stops reading never delays pushes to others") {
  constexpr int kServices = 3000;
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(kServices);
  server.SetState(mesh);

  const std::string stuck_id = "sidecar~10.0.0.2~stuck-0.default~default.svc.cluster.local";
  AdsTestClient stuck(server.port(), {.node = MakeNode(stuck_id), .read_responses = false});
  REQUIRE(stuck.Send(kCds, {}));
  REQUIRE(stuck.Send(kEds, ClusterNames(kServices)));
  REQUIRE(stuck.Send(kLds, {}));
  REQUIRE(stuck.Send(kRds, {"8080"}));
  REQUIRE(server.WaitForStream(
      [](const xds::StreamStatus& stream) {
        for (const xds::TypeStatus& type : stream.types) {
          if (type.sent_version.empty()) return false;
        }
        return true;
      },
      stuck_id));

  AdsTestClient fast(server.port());
  DiscoveryResponse cds = Subscribe(fast, kCds);
  REQUIRE(cds.resources_size() == kServices + 3);  // + the three built-in clusters
  for (int round = 0; round < 5; ++round) {
    std::string name = "extra-" + std::to_string(round);
    AddService(mesh, name, 8080, model::Protocol::kHttp);
    auto started = std::chrono::steady_clock::now();
    server.SetState(mesh);
    DiscoveryResponse pushed = ReadOf(fast, kCds);
    auto took = std::chrono::steady_clock::now() - started;
    CHECK(NameSet(pushed).contains(ClusterName(name)));
    CHECK(took < std::chrono::seconds(3));
    REQUIRE(fast.Ack(pushed));
  }

  // The stuck stream got its first responses and nothing more: newer state is coalesced
  // behind the un-ACKed ones instead of piling up in its outbox.
  std::optional<xds::StreamStatus> stuck_status = server.StreamOf(stuck_id);
  REQUIRE(stuck_status);
  for (const xds::TypeStatus& type : stuck_status->types) {
    CHECK(type.pushes == 1);
    CHECK(type.acked_version.empty());
  }
}

TEST_CASE("ads: a bad node id ends the stream with INVALID_ARGUMENT naming node.id") {
  AdsTestServer server;
  server.SetState(MakeMesh(1));
  AdsTestClient client(server.port(), {.node = MakeNode("not-a-node-id")});
  REQUIRE(client.Send(kCds, {}));
  std::optional<grpc::Status> status = client.WaitForEnd();
  REQUIRE(status);
  CHECK(status->error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(status->error_message(), Catch::Contains("node.id"));
  CHECK_FALSE(client.Read(std::chrono::milliseconds(0)));
  CHECK(server.ads().Streams().empty());
}

TEST_CASE("ads: a reconnecting client receives the current state") {
  AdsTestServer server;
  server.SetState(MakeMesh(1));
  std::string old_version;
  {
    AdsTestClient first(server.port());
    DiscoveryResponse cds = Subscribe(first, kCds);
    REQUIRE(WaitForAck(server, cds));
    old_version = cds.version_info();
  }
  server.SetState(MakeMesh(2));

  // Envoy reconnects with the version it last applied and no nonce.
  AdsTestClient second(server.port());
  REQUIRE(second.Send(kCds, {}, old_version));
  DiscoveryResponse current = ReadOf(second, kCds);
  CHECK(current.version_info() != old_version);
  CHECK(current.resources_size() == 5);  // 2 services + Passthrough, BlackHole, InboundPassthrough
  REQUIRE(second.Ack(current));
  REQUIRE(WaitForAck(server, current));

  // Even a client claiming the current version gets the full set on a new stream: the server
  // cannot know what a restarted proxy holds.
  AdsTestClient third(server.port(),
                      {.node = MakeNode("sidecar~10.0.0.2~app-2.default~default.svc.cluster.local")});
  REQUIRE(third.Send(kCds, {}, current.version_info()));
  DiscoveryResponse again = ReadOf(third, kCds);
  CHECK(again.version_info() == current.version_info());
  CHECK(again.resources_size() == 5);
}

TEST_CASE("ads: a proxyless gRPC client gets api_listeners and routes and EDS clusters by locality") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(1);
  AddService(mesh, "greeter", 50051, model::Protocol::kGrpc, 4, "10.96.7.7");
  AddService(mesh, "echo", 7070, model::Protocol::kGrpc, 1);
  server.SetState(mesh);
  const std::string node_id = "sidecar~10.0.0.9~grpc-client.default~default.svc.cluster.local";
  AdsTestClient client(server.port(), {.node = MakeNode(node_id, "grpc")});

  const std::string greeter = "greeter.default.svc.cluster.local:50051";
  const std::string echo = "echo.default.svc.cluster.local:7070";
  DiscoveryResponse lds = Subscribe(client, kLds, {greeter, echo});
  REQUIRE(NameSet(lds) == std::set<std::string>{greeter, echo});
  for (const google::protobuf::Any& any : lds.resources()) {
    envoy::config::listener::v3::Listener listener;
    REQUIRE(any.UnpackTo(&listener));
    INFO(listener.name());
    REQUIRE(listener.has_api_listener());
    CHECK(listener.filter_chains_size() == 0);
    HttpConnectionManager hcm;
    REQUIRE(listener.api_listener().api_listener().UnpackTo(&hcm));
    REQUIRE(hcm.has_rds());
    CHECK(hcm.rds().route_config_name() == listener.name());  // FQDN:PORT
    CHECK(hcm.rds().config_source().has_ads());
    REQUIRE(hcm.http_filters_size() > 0);
    CHECK(hcm.http_filters(hcm.http_filters_size() - 1).name() == "envoy.filters.http.router");
  }

  DiscoveryResponse rds = Subscribe(client, kRds, {greeter});
  REQUIRE(rds.resources_size() == 1);
  envoy::config::route::v3::RouteConfiguration route;
  REQUIRE(rds.resources(0).UnpackTo(&route));
  CHECK(route.name() == greeter);
  REQUIRE(route.virtual_hosts_size() == 1);
  const auto& domains = route.virtual_hosts(0).domains();
  CHECK(std::find(domains.begin(), domains.end(), greeter) != domains.end());
  REQUIRE(route.virtual_hosts(0).routes_size() > 0);
  const std::string cluster_name = "outbound|50051||greeter.default.svc.cluster.local";
  CHECK(route.virtual_hosts(0).routes(0).route().cluster() == cluster_name);

  DiscoveryResponse cds = Subscribe(client, kCds, {cluster_name});
  REQUIRE(cds.resources_size() == 1);
  envoy::config::cluster::v3::Cluster cluster;
  REQUIRE(cds.resources(0).UnpackTo(&cluster));
  CHECK(cluster.name() == cluster_name);
  CHECK(cluster.type() == envoy::config::cluster::v3::Cluster::EDS);
  CHECK(cluster.eds_cluster_config().eds_config().has_ads());
  CHECK(cluster.lb_policy() == envoy::config::cluster::v3::Cluster::ROUND_ROBIN);
  std::string eds_name = cluster.eds_cluster_config().service_name().empty()
                             ? cluster.name()
                             : cluster.eds_cluster_config().service_name();

  DiscoveryResponse eds = Subscribe(client, kEds, {eds_name});
  REQUIRE(eds.resources_size() == 1);
  envoy::config::endpoint::v3::ClusterLoadAssignment assignment;
  REQUIRE(eds.resources(0).UnpackTo(&assignment));
  CHECK(assignment.cluster_name() == eds_name);
  REQUIRE(assignment.endpoints_size() == 2);  // zones us-east1-a and us-east1-b
  std::set<std::string> zones;
  int endpoints = 0;
  for (const auto& locality : assignment.endpoints()) {
    zones.insert(locality.locality().zone());
    CHECK(locality.locality().region() == "us-east1");
    CHECK(locality.has_load_balancing_weight());
    CHECK(locality.load_balancing_weight().value() > 0);
    endpoints += locality.lb_endpoints_size();
    for (const auto& lb_endpoint : locality.lb_endpoints()) {
      CHECK(lb_endpoint.endpoint().address().socket_address().port_value() == 50051);
    }
  }
  CHECK(zones == std::set<std::string>{"us-east1-a", "us-east1-b"});
  CHECK(endpoints == 4);
}

TEST_CASE("ads: CloseAll ends open streams with UNAVAILABLE") {
  AdsTestServer server;
  server.SetState(MakeMesh(1));
  AdsTestClient first(server.port());
  AdsTestClient second(server.port(),
                       {.node = MakeNode("sidecar~10.0.0.2~app-2.default~default.svc.cluster.local")});
  Subscribe(first, kCds);
  Subscribe(second, kLds);

  server.ads().CloseAll();
  for (AdsTestClient* client : {&first, &second}) {
    std::optional<grpc::Status> status = client->WaitForEnd();
    REQUIRE(status);
    CHECK(status->error_code() == grpc::StatusCode::UNAVAILABLE);
  }

  // A proxy that connects during shutdown is turned away the same way.
  AdsTestClient late(server.port(),
                     {.node = MakeNode("sidecar~10.0.0.3~app-3.default~default.svc.cluster.local")});
  late.Send(kCds, {});
  std::optional<grpc::Status> status = late.WaitForEnd();
  REQUIRE(status);
  CHECK(status->error_code() == grpc::StatusCode::UNAVAILABLE);
}

}  // namespace meshpilot::testing
