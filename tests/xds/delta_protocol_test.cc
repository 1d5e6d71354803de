// Delta (incremental) ADS as a proxy sees it: one rule per test, each over a real gRPC
// DeltaAggregatedResources stream to an in-process AdsServer.

#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <thread>
#include <string>
#include <vector>

#include "tests/xds/ads_test_client.h"

namespace meshpilot::testing {
namespace {

using cache::ResourceType;

const xds::TypeStatus& TypeOf(const xds::StreamStatus& stream, ResourceType type) {
  return stream.types[static_cast<size_t>(type)];
}

std::set<std::string> NameSet(const DeltaDiscoveryResponse& response) {
  std::vector<std::string> names = ResourceNames(response);
  return {names.begin(), names.end()};
}

std::set<std::string> Removed(const DeltaDiscoveryResponse& response) {
  return {response.removed_resources().begin(), response.removed_resources().end()};
}

// The next response, which must be of `type_url`.
DeltaDiscoveryResponse ReadOf(DeltaTestClient& client, const std::string& type_url) {
  std::optional<DeltaDiscoveryResponse> response = client.Read();
  REQUIRE(response.has_value());
  REQUIRE(response->type_url() == type_url);
  return *response;
}

// Subscribes to `names` of `type_url`, reads the answer and ACKs it.
DeltaDiscoveryResponse Subscribe(DeltaTestClient& client, const std::string& type_url,
                                 const std::vector<std::string>& names = {}) {
  REQUIRE(client.Subscribe(type_url, names));
  DeltaDiscoveryResponse response = ReadOf(client, type_url);
  REQUIRE(client.Ack(response));
  return response;
}

std::vector<std::string> ClusterNames(int services) {
  std::vector<std::string> names;
  for (int i = 0; i < services; ++i) names.push_back(ClusterName("svc-" + std::to_string(i)));
  return names;
}

// Waits until the server has processed the client's ACK of `response`.
bool WaitForAck(const AdsTestServer& server, const DeltaDiscoveryResponse& response,
                const std::string& node_id = kSidecarNodeId) {
  ResourceType type = *cache::TypeFromUrl(response.type_url());
  return server.WaitForStream(
      [&](const xds::StreamStatus& stream) {
        return TypeOf(stream, type).acked_version == response.system_version_info() &&
               TypeOf(stream, type).sent_nonce == response.nonce();
      },
      node_id);
}

const std::string kOtherNode = "sidecar~10.0.0.2~app-2.default~default.svc.cluster.local";

}  // namespace

TEST_CASE("delta: nothing is sent before the first state and pending subscriptions are answered after it") {
  AdsTestServer server;
  DeltaTestClient client(server.port());
  REQUIRE(client.Subscribe(kCds, {}));
  REQUIRE(client.Subscribe(kLds, {}));
  REQUIRE(server.WaitForStream([](const xds::StreamStatus& stream) {
    return TypeOf(stream, ResourceType::kCluster).subscribed &&
           TypeOf(stream, ResourceType::kListener).subscribed;
  }));
  // Sources have not synced: an empty answer now would tell the proxy there is nothing.
  CHECK(client.ExpectNothing());
  CHECK(server.StreamOf()->types[0].sent_version.empty());

  server.SetState(MakeMesh(2));
  DeltaDiscoveryResponse cds = ReadOf(client, kCds);
  CHECK(cds.resources_size() == 5);  // 2 services + PassthroughCluster + BlackHoleCluster
  DeltaDiscoveryResponse lds = ReadOf(client, kLds);
  CHECK(lds.resources_size() == 3);  // 0.0.0.0_8080 + virtualOutbound
}

TEST_CASE("delta: a wildcard CDS subscription gets the full set and then only what changed") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(2);
  server.SetState(mesh);
  DeltaTestClient client(server.port());

  DeltaDiscoveryResponse cds = Subscribe(client, kCds);
  CHECK(NameSet(cds) == std::set<std::string>{"BlackHoleCluster", "InboundPassthroughClusterIpv4", "PassthroughCluster",
                                              ClusterName("svc-0"), ClusterName("svc-1")});
  CHECK(cds.removed_resources().empty());
  std::vector<std::string> decoded = ResourceNames(cds);
  for (int i = 0; i < cds.resources_size(); ++i) {
    CHECK(cds.resources(i).name() == decoded[i]);
    CHECK(cds.resources(i).version().size() == 16);  // per-resource content hash
  }
  CHECK_FALSE(cds.system_version_info().empty());
  CHECK_FALSE(cds.nonce().empty());
  REQUIRE(WaitForAck(server, cds));

  AddService(mesh, "web", 8080, model::Protocol::kHttp);
  server.SetState(mesh);
  DeltaDiscoveryResponse added = ReadOf(client, kCds);
  CHECK(NameSet(added) == std::set<std::string>{ClusterName("web")});
  CHECK(added.removed_resources().empty());
  CHECK(added.system_version_info() != cds.system_version_info());
  CHECK(added.nonce() != cds.nonce());
  REQUIRE(client.Ack(added));
  REQUIRE(WaitForAck(server, added));

  // Endpoints only: nothing for CDS. Same content again: nothing at all.
  mesh.endpoints["default/svc-0"].pop_back();
  server.SetState(mesh);
  server.SetState(mesh);
  CHECK(client.ExpectNothing());

  // "*" is the explicit spelling of the same subscription; a delta client holding the same
  // resources reports the same version as a state-of-the-world one.
  DeltaTestClient star(server.port(), {.node = MakeNode(kOtherNode)});
  DeltaDiscoveryResponse star_cds = Subscribe(star, kCds, {"*"});
  CHECK(star_cds.resources_size() == 6);
  CHECK(star_cds.system_version_info() == added.system_version_info());
  AdsTestClient sotw(server.port(), {.node = MakeNode(kOtherNode)});
  REQUIRE(sotw.Send(kCds, {}));
  std::optional<DiscoveryResponse> sotw_cds = sotw.Read();
  REQUIRE(sotw_cds);
  CHECK(sotw_cds->version_info() == star_cds.system_version_info());
}

TEST_CASE("delta: '*' or an empty first request is a wildcard and naming resources ends the legacy one") {
  AdsTestServer server;
  server.SetState(MakeMesh(2));
  DeltaTestClient client(server.port());
  Subscribe(client, kCds);  // legacy wildcard
  DeltaDiscoveryResponse lds = Subscribe(client, kLds, {"*"});
  CHECK(NameSet(lds) == std::set<std::string>{"0.0.0.0_8080", "virtualInbound", "virtualOutbound"});
  REQUIRE(WaitForAck(server, lds));
  std::optional<xds::StreamStatus> stream = server.StreamOf();
  REQUIRE(stream);
  CHECK(TypeOf(*stream, ResourceType::kCluster).wildcard);
  CHECK(TypeOf(*stream, ResourceType::kListener).wildcard);

  // Naming a cluster ends the legacy wildcard (Envoy adds "*" when it wants both)...
  REQUIRE(client.Subscribe(kCds, {ClusterName("svc-0")}));
  DeltaDiscoveryResponse named = ReadOf(client, kCds);
  CHECK(NameSet(named) == std::set<std::string>{ClusterName("svc-0")});
  REQUIRE(client.Ack(named));
  REQUIRE(WaitForAck(server, named));
  stream = server.StreamOf();
  REQUIRE(stream);
  CHECK_FALSE(TypeOf(*stream, ResourceType::kCluster).wildcard);
  // ...so a new service no longer reaches it, while the explicit LDS wildcard goes on.
  model::MeshState mesh = MakeMesh(2);
  AddService(mesh, "db", 5432, model::Protocol::kTcp, 2, "10.96.100.1");
  server.SetState(mesh);
  DeltaDiscoveryResponse lds2 = ReadOf(client, kLds);
  CHECK(NameSet(lds2) == std::set<std::string>{"10.96.100.1_5432"});
  REQUIRE(client.Ack(lds2));
  CHECK(client.ExpectNothing());

  // Unsubscribing "*" ends the explicit wildcard.
  REQUIRE(client.Unsubscribe(kLds, {"*"}));
  REQUIRE(server.WaitForStream([](const xds::StreamStatus& stream) {
    return !TypeOf(stream, ResourceType::kListener).wildcard;
  }));
  AddService(mesh, "cache", 6379, model::Protocol::kTcp, 1, "10.96.100.2");
  server.SetState(mesh);
  CHECK(client.ExpectNothing());
}

TEST_CASE("delta: a removed service is named in removed_resources") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(3);
  server.SetState(mesh);
  DeltaTestClient client(server.port());
  Subscribe(client, kCds);
  DeltaDiscoveryResponse eds = Subscribe(client, kEds, ClusterNames(3));
  CHECK(eds.resources_size() == 3);
  REQUIRE(WaitForAck(server, eds));

  RemoveService(mesh, "svc-1");
  server.SetState(mesh);
  DeltaDiscoveryResponse cds = ReadOf(client, kCds);
  CHECK(cds.resources_size() == 0);
  CHECK(Removed(cds) == std::set<std::string>{ClusterName("svc-1")});
  REQUIRE(client.Ack(cds));
  // A named subscription to what no longer exists: told so, and still subscribed.
  DeltaDiscoveryResponse eds2 = ReadOf(client, kEds);
  CHECK(eds2.resources_size() == 0);
  CHECK(Removed(eds2) == std::set<std::string>{ClusterName("svc-1")});
  REQUIRE(client.Ack(eds2));
  CHECK(client.ExpectNothing());
  CHECK(client.Held(kCds).size() == 5);
  CHECK(client.Held(kEds).size() == 2);
  REQUIRE(WaitForAck(server, eds2));
  std::vector<std::string> subscribed = ClusterNames(3);
  CHECK(TypeOf(*server.StreamOf(), ResourceType::kEndpoint).names ==
        std::set<std::string>(subscribed.begin(), subscribed.end()));

  // It comes back: sent again.
  server.SetState(MakeMesh(3));
  CHECK(NameSet(ReadOf(client, kCds)) == std::set<std::string>{ClusterName("svc-1")});
  CHECK(NameSet(ReadOf(client, kEds)) == std::set<std::string>{ClusterName("svc-1")});
}

TEST_CASE("delta: a removed cluster is named in removed_resources only after the routes that named it") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(3);
  server.SetState(mesh);
  DeltaTestClient client(server.port());
  Subscribe(client, kCds);
  Subscribe(client, kEds, ClusterNames(3));
  Subscribe(client, kLds);
  DeltaDiscoveryResponse rds = Subscribe(client, kRds, {"8080"});
  REQUIRE(WaitForAck(server, rds));

  RemoveService(mesh, "svc-1");
  server.SetState(mesh);
  DeltaDiscoveryResponse rds2 = ReadOf(client, kRds);
  CHECK(NameSet(rds2) == std::set<std::string>{"8080"});
  CHECK(client.ExpectNothing());

  REQUIRE(client.Ack(rds2));
  DeltaDiscoveryResponse cds2 = ReadOf(client, kCds);
  CHECK(cds2.resources_size() == 0);
  CHECK(Removed(cds2) == std::set<std::string>{ClusterName("svc-1")});
  DeltaDiscoveryResponse eds2 = ReadOf(client, kEds);
  CHECK(Removed(eds2) == std::set<std::string>{ClusterName("svc-1")});
}

TEST_CASE("delta: a proxy that reconnects after rejecting its routes keeps what they name") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(2);
  server.SetState(mesh);
  std::map<std::string, DeltaTestClient::Versions> held;
  {
    DeltaTestClient first(server.port());
    Subscribe(first, kCds);
    Subscribe(first, kEds, ClusterNames(2));
    Subscribe(first, kLds);
    DeltaDiscoveryResponse rds = Subscribe(first, kRds, {"8080"});
    REQUIRE(WaitForAck(server, rds));
    RemoveService(mesh, "svc-1");
    server.SetState(mesh);
    REQUIRE(first.Nack(ReadOf(first, kRds), "route_config 8080: rejected for the test"));
    REQUIRE(server.WaitForStream([](const xds::StreamStatus& stream) {
      return TypeOf(stream, ResourceType::kRoute).rejected;
    }));
    for (const std::string& type : {kCds, kEds, kLds, kRds}) held[type] = first.Held(type);
  }
  REQUIRE(held[kCds].contains(ClusterName("svc-1")));
  auto deadline = std::chrono::steady_clock::now() + kReadTimeout;
  while (server.StreamOf() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  REQUIRE_FALSE(server.StreamOf());

  // It comes back saying what it holds; its old routes name svc-1, which it must keep.
  DeltaTestClient second(server.port());
  REQUIRE(second.Subscribe(kCds, {}, held[kCds]));
  REQUIRE(second.Subscribe(kEds, ClusterNames(2), held[kEds]));
  REQUIRE(second.Subscribe(kLds, {}, held[kLds]));
  REQUIRE(second.Subscribe(kRds, {"8080"}, held[kRds]));
  DeltaDiscoveryResponse cds = ReadOf(second, kCds);
  CHECK(Removed(cds).empty());
  REQUIRE(second.Ack(cds));
  REQUIRE(second.Ack(ReadOf(second, kLds)));
  REQUIRE(second.Nack(ReadOf(second, kRds), "route_config 8080: rejected for the test"));
  CHECK(second.ExpectNothing());
  REQUIRE(server.WaitForStream([](const xds::StreamStatus& stream) {
    return TypeOf(stream, ResourceType::kRoute).rejects == 1 &&
           TypeOf(stream, ResourceType::kCluster).held ==
               std::vector<std::string>{ClusterName("svc-1")};
  }));

  // Routes it accepts let the removal through.
  AddService(mesh, "web", 8080, model::Protocol::kHttp);
  server.SetState(mesh);
  DeltaDiscoveryResponse cds2 = ReadOf(second, kCds);
  CHECK(NameSet(cds2) == std::set<std::string>{ClusterName("web")});
  REQUIRE(second.Ack(cds2));
  REQUIRE(second.Ack(ReadOf(second, kRds)));
  DeltaDiscoveryResponse cds3 = ReadOf(second, kCds);
  CHECK(Removed(cds3) == std::set<std::string>{ClusterName("svc-1")});
  REQUIRE(second.Ack(cds3));
  DeltaDiscoveryResponse eds3 = ReadOf(second, kEds);
  CHECK(Removed(eds3) == std::set<std::string>{ClusterName("svc-1")});
}

TEST_CASE("delta: named EDS and RDS follow subscribe and unsubscribe; missing names are sent when they appear") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(2);
  server.SetState(mesh);
  DeltaTestClient client(server.port());

  // A name that does not exist is reported in removed_resources at once (no timeout
  // needed) and stays subscribed.
  DeltaDiscoveryResponse eds = Subscribe(client, kEds, {ClusterName("svc-0"), ClusterName("web", 9090)});
  CHECK(NameSet(eds) == std::set<std::string>{ClusterName("svc-0")});
  CHECK(Removed(eds) == std::set<std::string>{ClusterName("web", 9090)});
  DeltaDiscoveryResponse rds = Subscribe(client, kRds, {"8080", "9090"});
  CHECK(NameSet(rds) == std::set<std::string>{"8080"});
  CHECK(Removed(rds) == std::set<std::string>{"9090"});

  // Subscribing one more name sends that one only.
  DeltaDiscoveryResponse more = Subscribe(client, kEds, {ClusterName("svc-1")});
  CHECK(NameSet(more) == std::set<std::string>{ClusterName("svc-1")});
  CHECK(more.removed_resources().empty());
  REQUIRE(WaitForAck(server, more));
  std::optional<xds::StreamStatus> stream = server.StreamOf();
  REQUIRE(stream);
  CHECK(TypeOf(*stream, ResourceType::kEndpoint).names ==
        std::set<std::string>{ClusterName("svc-0"), ClusterName("svc-1"),
                              ClusterName("web", 9090)});
  CHECK(TypeOf(*stream, ResourceType::kRoute).names == std::set<std::string>{"8080", "9090"});

  // Unsubscribing needs no answer, and changes to what is no longer subscribed are not sent.
  REQUIRE(client.Unsubscribe(kEds, {ClusterName("svc-0")}));
  REQUIRE(server.WaitForStream([](const xds::StreamStatus& stream) {
    return !TypeOf(stream, ResourceType::kEndpoint).names.contains(ClusterName("svc-0"));
  }));
  mesh.endpoints["default/svc-0"].pop_back();
  server.SetState(mesh);
  CHECK(client.ExpectNothing());

  // The missing names appear: exactly those are sent.
  AddService(mesh, "web", 9090, model::Protocol::kHttp);
  server.SetState(mesh);
  DeltaDiscoveryResponse eds2 = ReadOf(client, kEds);
  CHECK(NameSet(eds2) == std::set<std::string>{ClusterName("web", 9090)});
  CHECK(eds2.removed_resources().empty());
  REQUIRE(client.Ack(eds2));
  DeltaDiscoveryResponse rds2 = ReadOf(client, kRds);
  CHECK(NameSet(rds2) == std::set<std::string>{"9090"});
  REQUIRE(client.Ack(rds2));
  CHECK(client.ExpectNothing());

  // Subscribing to a name the server thinks the client holds sends it again: the client
  // may have forgotten it (xDS: "Subscribing to Resources").
  DeltaDiscoveryResponse again = Subscribe(client, kRds, {"8080"});
  CHECK(NameSet(again) == std::set<std::string>{"8080"});
}

TEST_CASE("delta: initial_resource_versions on reconnect suppress resends of what the client has") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(3);
  server.SetState(mesh);
  DeltaTestClient::Versions held_cds;
  DeltaTestClient::Versions held_eds;
  {
    DeltaTestClient first(server.port());
    Subscribe(first, kCds);
    DeltaDiscoveryResponse eds = Subscribe(first, kEds, ClusterNames(3));
    REQUIRE(WaitForAck(server, eds));
    held_cds = first.Held(kCds);
    held_eds = first.Held(kEds);
  }
  REQUIRE(held_cds.size() == 6);
  REQUIRE(held_eds.size() == 3);

  // While it was away: svc-1 removed, web added, svc-2's endpoints changed.
  RemoveService(mesh, "svc-1");
  AddService(mesh, "web", 8080, model::Protocol::kHttp);
  mesh.endpoints["default/svc-2"].pop_back();
  server.SetState(mesh);

  DeltaTestClient second(server.port());
  REQUIRE(second.Subscribe(kCds, {}, held_cds));
  DeltaDiscoveryResponse cds = ReadOf(second, kCds);
  CHECK(NameSet(cds) == std::set<std::string>{ClusterName("web")});
  CHECK(Removed(cds) == std::set<std::string>{ClusterName("svc-1")});
  REQUIRE(second.Ack(cds));
  REQUIRE(second.Subscribe(kEds, ClusterNames(3), held_eds));
  DeltaDiscoveryResponse eds = ReadOf(second, kEds);
  CHECK(NameSet(eds) == std::set<std::string>{ClusterName("svc-2")});
  CHECK(Removed(eds) == std::set<std::string>{ClusterName("svc-1")});
  REQUIRE(second.Ack(eds));
  CHECK(second.ExpectNothing());

  // A client that holds everything current gets one empty answer: it is up to date.
  DeltaTestClient third(server.port(), {.node = MakeNode(kOtherNode)});
  Subscribe(third, kCds);
  DeltaTestClient::Versions current = third.Held(kCds);
  DeltaTestClient fourth(server.port(),
                         {.node = MakeNode("sidecar~10.0.0.3~app-3.default~default.svc.cluster.local")});
  REQUIRE(fourth.Subscribe(kCds, {"*"}, current));
  DeltaDiscoveryResponse empty = ReadOf(fourth, kCds);
  CHECK(empty.resources_size() == 0);
  CHECK(empty.removed_resources().empty());
  REQUIRE(fourth.Ack(empty));
  CHECK(fourth.ExpectNothing());
}

TEST_CASE("delta: a NACK keeps what the client holds, is reported, and is not resent") {
  AdsTestServer server;
  server.SetState(MakeMesh(2));
  DeltaTestClient client(server.port());
  DeltaDiscoveryResponse v1 = Subscribe(client, kCds);
  REQUIRE(WaitForAck(server, v1));

  server.SetState(MakeMesh(3));
  DeltaDiscoveryResponse v2 = ReadOf(client, kCds);
  REQUIRE(NameSet(v2) == std::set<std::string>{ClusterName("svc-2")});
  REQUIRE(client.Nack(v2, "cluster outbound|8080||svc-2: unsupported lb policy"));
  REQUIRE(server.WaitForStream([](const xds::StreamStatus& stream) {
    return TypeOf(stream, ResourceType::kCluster).rejects == 1;
  }));
  CHECK(client.ExpectNothing());  // not resent in a loop

  std::optional<xds::StreamStatus> stream = server.StreamOf();
  REQUIRE(stream);
  CHECK(stream->protocol == xds::Protocol::kDelta);
  const xds::TypeStatus& cds = TypeOf(*stream, ResourceType::kCluster);
  CHECK(cds.nack_error == "cluster outbound|8080||svc-2: unsupported lb policy");
  CHECK(cds.nacked_version == v2.system_version_info());
  CHECK(cds.acked_version == v1.system_version_info());
  CHECK_THAT(server.metrics().Render(),
             Catch::Contains("pilot_total_xds_rejects{type=\"cds\"} 1\n"));
  CHECK_THAT(server.metrics().Render(), Catch::Contains("pilot_xds_pushes{type=\"cds\"} 2\n"));

  // The same content again (new state version) is still what was rejected: nothing.
  server.SetState(MakeMesh(3));
  CHECK(client.ExpectNothing());

  // A different change goes out, measured against what the client kept (v1): svc-2 too.
  server.SetState(MakeMesh(4));
  DeltaDiscoveryResponse v3 = ReadOf(client, kCds);
  CHECK(NameSet(v3) == std::set<std::string>{ClusterName("svc-2"), ClusterName("svc-3")});
  REQUIRE(client.Ack(v3));
  REQUIRE(WaitForAck(server, v3));
  CHECK(TypeOf(*server.StreamOf(), ResourceType::kCluster).nack_error.empty());
}

TEST_CASE("delta: at most one un-ACKed response per type and then the newest state") {
  AdsTestServer server;
  server.SetState(MakeMesh(1));
  DeltaTestClient client(server.port());
  REQUIRE(client.Subscribe(kCds, {}));
  DeltaDiscoveryResponse v1 = ReadOf(client, kCds);
  CHECK(v1.resources_size() == 4);

  server.SetState(MakeMesh(2));
  server.SetState(MakeMesh(3));
  CHECK(client.ExpectNothing());

  // One response with both new clusters, not one per intermediate state.
  REQUIRE(client.Ack(v1));
  DeltaDiscoveryResponse latest = ReadOf(client, kCds);
  CHECK(NameSet(latest) == std::set<std::string>{ClusterName("svc-1"), ClusterName("svc-2")});
  REQUIRE(client.Ack(latest));
  CHECK(client.ExpectNothing());
  REQUIRE(WaitForAck(server, latest));
  CHECK(TypeOf(*server.StreamOf(), ResourceType::kCluster).pushes == 2);
}

TEST_CASE("delta: a change touching all four types arrives in the order CDS EDS LDS RDS") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(2);
  server.SetState(mesh);
  DeltaTestClient client(server.port());
  Subscribe(client, kCds);
  Subscribe(client, kEds, ClusterNames(2));
  Subscribe(client, kLds);
  DeltaDiscoveryResponse rds = Subscribe(client, kRds, {"8080"});
  REQUIRE(WaitForAck(server, rds));

  // New HTTP service (CDS + route "8080"), a new TCP listener (LDS), svc-0's endpoints (EDS).
  AddService(mesh, "web", 8080, model::Protocol::kHttp);
  AddService(mesh, "db", 5432, model::Protocol::kTcp, 2, "10.96.100.1");
  mesh.endpoints["default/svc-0"].pop_back();
  server.SetState(mesh);

  std::vector<std::string> order;
  for (int i = 0; i < 4; ++i) {
    std::optional<DeltaDiscoveryResponse> response = client.Read();
    REQUIRE(response);
    order.push_back(response->type_url());
    REQUIRE(client.Ack(*response));
  }
  CHECK(order == std::vector<std::string>{kCds, kEds, kLds, kRds});
  CHECK(client.ExpectNothing());
}

TEST_CASE("delta: later types wait while an earlier type awaits its ACK") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(1);
  server.SetState(mesh);
  DeltaTestClient client(server.port());
  Subscribe(client, kCds);
  DeltaDiscoveryResponse lds = Subscribe(client, kLds);
  REQUIRE(WaitForAck(server, lds));

  AddService(mesh, "db", 5432, model::Protocol::kTcp, 1, "10.96.100.1");
  server.SetState(mesh);
  DeltaDiscoveryResponse cds2 = ReadOf(client, kCds);  // not ACKed yet
  DeltaDiscoveryResponse lds2 = ReadOf(client, kLds);
  REQUIRE(client.Ack(lds2));
  REQUIRE(WaitForAck(server, lds2));

  // Clusters and listeners change again while CDS is still in flight: the listener that
  // names the new cluster must not overtake it.
  AddService(mesh, "cache", 6379, model::Protocol::kTcp, 1, "10.96.100.2");
  server.SetState(mesh);
  CHECK(client.ExpectNothing());

  REQUIRE(client.Ack(cds2));
  DeltaDiscoveryResponse cds3 = ReadOf(client, kCds);
  CHECK(NameSet(cds3) == std::set<std::string>{ClusterName("cache", 6379)});
  DeltaDiscoveryResponse lds3 = ReadOf(client, kLds);
  CHECK(NameSet(lds3) == std::set<std::string>{"10.96.100.2_6379"});
}

TEST_CASE("delta: EDS of new and changed clusters follows a CDS push even when endpoints did not change") {
  AdsTestServer server;
  model::MeshState mesh = MakeMesh(2);
  AddService(mesh, "web", 8080, model::Protocol::kHttp);
  server.SetState(mesh);
  DeltaTestClient client(server.port());
  Subscribe(client, kCds);
  std::vector<std::string> eds_names = ClusterNames(2);
  eds_names.push_back(ClusterName("web"));
  DeltaDiscoveryResponse eds = Subscribe(client, kEds, eds_names);
  REQUIRE(eds.resources_size() == 3);
  REQUIRE(WaitForAck(server, eds));
  std::string web_version = client.Held(kEds).at(ClusterName("web"));

  // web now speaks HTTP/2: its cluster changes, its endpoints do not.
  AddService(mesh, "web", 8080, model::Protocol::kHttp2);
  server.SetState(mesh);
  DeltaDiscoveryResponse cds = ReadOf(client, kCds);
  CHECK(NameSet(cds) == std::set<std::string>{ClusterName("web")});
  REQUIRE(client.Ack(cds));
  DeltaDiscoveryResponse eds2 = ReadOf(client, kEds);
  CHECK(NameSet(eds2) == std::set<std::string>{ClusterName("web")});  // only the changed one
  REQUIRE(eds2.resources_size() == 1);
  CHECK(eds2.resources(0).version() == web_version);
  REQUIRE(client.Ack(eds2));
  CHECK(client.ExpectNothing());
}

TEST_CASE("delta: subscription changes count even when they carry a stale nonce") {
  AdsTestServer server;
  server.SetState(MakeMesh(2));
  DeltaTestClient client(server.port());
  DeltaDiscoveryResponse eds = Subscribe(client, kEds, {ClusterName("svc-0")});
  REQUIRE(WaitForAck(server, eds));

  DeltaDiscoveryRequest request;
  request.set_type_url(kEds);
  request.set_response_nonce("stale");
  request.add_resource_names_subscribe(ClusterName("svc-1"));
  REQUIRE(client.Send(request));
  DeltaDiscoveryResponse eds2 = ReadOf(client, kEds);
  CHECK(NameSet(eds2) == std::set<std::string>{ClusterName("svc-1")});
  std::optional<xds::StreamStatus> stream = server.StreamOf();
  REQUIRE(stream);
  CHECK(TypeOf(*stream, ResourceType::kEndpoint).rejects == 0);
  CHECK(TypeOf(*stream, ResourceType::kEndpoint).acked_version == eds.system_version_info());
}

TEST_CASE("delta: streams are listed as delta next to SotW ones and CloseAll ends them") {
  AdsTestServer server;
  server.SetState(MakeMesh(1));
  DeltaTestClient delta(server.port());
  AdsTestClient sotw(server.port(), {.node = MakeNode(kOtherNode)});
  Subscribe(delta, kCds);
  REQUIRE(sotw.Send(kCds, {}));
  REQUIRE(sotw.Read());
  REQUIRE(server.WaitForStream([](const xds::StreamStatus& stream) {
    return stream.protocol == xds::Protocol::kDelta;
  }));
  REQUIRE(server.WaitForStream(
      [](const xds::StreamStatus& stream) {
        return stream.protocol == xds::Protocol::kStateOfTheWorld;
      },
      kOtherNode));
  CHECK_THAT(server.metrics().Render(), Catch::Contains("pilot_xds{version=\"meshpilot\"} 2\n"));

  server.ads().CloseAll();
  std::optional<grpc::Status> status = delta.WaitForEnd();
  REQUIRE(status);
  CHECK(status->error_code() == grpc::StatusCode::UNAVAILABLE);
}

TEST_CASE("delta: a bad node id ends the stream with INVALID_ARGUMENT naming node.id") {
  AdsTestServer server;
  server.SetState(MakeMesh(1));
  DeltaTestClient client(server.port(), {.node = MakeNode("not-a-node-id")});
  REQUIRE(client.Subscribe(kCds, {}));
  std::optional<grpc::Status> status = client.WaitForEnd();
  REQUIRE(status);
  CHECK(status->error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(status->error_message(), Catch::Contains("node.id"));
  CHECK(server.ads().Streams().empty());
}

}  // namespace meshpilot::testing
