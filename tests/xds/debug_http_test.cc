// The debug HTTP endpoints over real HTTP (cpprestsdk client -> debug::HttpServer), answered
// from a live ADS server with real streams connected. No spdlog here: cpprest and fmt clash.

#include <catch2/catch.hpp>
#include <cpprest/http_client.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "controlplane/debug/debug_handler.h"
#include "controlplane/debug/http_server.h"
#include "nlohmann/json.hpp"
#include "tests/xds/ads_test_client.h"

namespace meshpilot::testing {
namespace {

using nlohmann::json;

// A port nobody listens on right now: bind to 0, read it back, release it.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  socklen_t length = sizeof(address);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  close(fd);
  return ntohs(address.sin_port);
}

struct HttpResult {
  int status = 0;
  std::string content_type;
  std::string body;

  json Json() const {
    json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
    REQUIRE_FALSE(parsed.is_discarded());
    return parsed;
  }
};

// The ADS test server plus the debug HTTP server in front of it, as main.cc wires them.
class DebugServer {
 public:
  DebugServer()
      : handler_(ads.ads(), ads.cache(), ads.metrics(), [this] { return ads.synced(); }),
        http_(handler_) {
    // The port may be taken between FreePort() and Start(): try a few.
    absl::Status started;
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = FreePort();
      started = http_.Start("127.0.0.1", port_);
      if (started.ok()) break;
    }
    REQUIRE(started.ok());
  }

  HttpResult Get(const std::string& path, const std::map<std::string, std::string>& query = {}) {
    web::uri_builder uri(path);
    for (const auto& [key, value] : query) uri.append_query(key, value);
    web::http::client::http_client_config config;
    config.set_timeout(std::chrono::seconds(5));
    web::http::client::http_client client("http://127.0.0.1:" + std::to_string(port_), config);
    HttpResult result;
    try {
      web::http::http_response response =
          client.request(web::http::methods::GET, uri.to_string()).get();
      result.status = response.status_code();
      result.content_type = response.headers().content_type();
      result.body = response.extract_string(/*ignore_content_type=*/true).get();
    } catch (const std::exception& e) {
      FAIL("GET " << path << ": " << e.what());
    }
    return result;
  }

  AdsTestServer ads;

 private:
  debug::DebugHandler handler_;
  debug::HttpServer http_;
  int port_ = 0;
};

// Connects `client`, subscribes CDS and LDS, ACKs both and waits until the server saw the
// ACKs; returns the CDS response.
DiscoveryResponse ConnectAndAck(DebugServer& server, AdsTestClient& client,
                                const std::string& node_id = kSidecarNodeId) {
  REQUIRE(client.Send(kCds, {}));
  std::optional<DiscoveryResponse> cds = client.Read();
  REQUIRE(cds);
  REQUIRE(client.Ack(*cds));
  REQUIRE(client.Send(kLds, {}));
  std::optional<DiscoveryResponse> lds = client.Read();
  REQUIRE(lds);
  REQUIRE(client.Ack(*lds));
  REQUIRE(server.ads.WaitForStream(
      [&](const xds::StreamStatus& stream) {
        return stream.types[static_cast<size_t>(cache::ResourceType::kListener)]
                   .acked_version == lds->version_info();
      },
      node_id));
  return *cds;
}

}  // namespace

TEST_CASE("debug: /ready is 503 before the first state and 200 after") {
  DebugServer server;
  HttpResult before = server.Get("/ready");
  CHECK(before.status == 503);
  server.ads.SetState(MakeMesh(1));
  HttpResult after = server.Get("/ready");
  CHECK(after.status == 200);
}

TEST_CASE("debug: /metrics exposes pilot_xds_pushes by type and pilot_xds") {
  DebugServer server;
  server.ads.SetState(MakeMesh(2));
  AdsTestClient client(server.ads.port());
  ConnectAndAck(server, client);

  HttpResult metrics = server.Get("/metrics");
  CHECK(metrics.status == 200);
  CHECK_THAT(metrics.content_type, Catch::StartsWith("text/plain"));
  CHECK_THAT(metrics.body, Catch::Contains("pilot_xds_pushes{type=\"cds\"} 1\n"));
  CHECK_THAT(metrics.body, Catch::Contains("pilot_xds_pushes{type=\"lds\"} 1\n"));
  CHECK_THAT(metrics.body, Catch::Contains("pilot_xds_pushes{type=\"eds\"} 0\n"));
  CHECK_THAT(metrics.body, Catch::Contains("pilot_xds_pushes{type=\"rds\"} 0\n"));
  CHECK_THAT(metrics.body, Catch::Contains("pilot_xds{version=\"meshpilot\"} 1\n"));
  CHECK_THAT(metrics.body, Catch::Contains("pilot_total_xds_rejects{type=\"cds\"} 0\n"));
}

TEST_CASE("debug: /debug/syncz lists a connected proxy with sent and acked versions") {
  DebugServer server;
  server.ads.SetState(MakeMesh(2));
  AdsTestClient client(server.ads.port());
  DiscoveryResponse cds = ConnectAndAck(server, client);

  HttpResult syncz = server.Get("/debug/syncz");
  REQUIRE(syncz.status == 200);
  json proxies = syncz.Json();
  REQUIRE(proxies.is_array());
  REQUIRE(proxies.size() == 1);
  const json& proxy = proxies[0];
  CHECK(proxy["proxy"] == kSidecarNodeId);
  CHECK_THAT(proxy["connection_id"].get<std::string>(),
             Catch::StartsWith(std::string(kSidecarNodeId) + "-"));
  CHECK(proxy["cluster_sent"] == cds.nonce());
  CHECK(proxy["cluster_acked"] == cds.version_info());
  CHECK(proxy["types"]["cds"]["sent_version"] == cds.version_info());
  CHECK(proxy["types"]["cds"]["acked_version"] == cds.version_info());
  CHECK(proxy["types"]["cds"]["wildcard"] == true);
  CHECK(proxy["types"]["lds"]["acked_version"].get<std::string>().size() > 0);
  CHECK(proxy["types"]["eds"]["subscribed"] == false);
  CHECK(proxy["route_acked"] == "");
}

TEST_CASE("debug: /debug/syncz and /metrics show what a proxy rejecting its routes holds") {
  DebugServer server;
  model::MeshState mesh = MakeMesh(2);
  server.ads.SetState(mesh);
  AdsTestClient client(server.ads.port());
  ConnectAndAck(server, client);
  REQUIRE(client.Send(kRds, {"8080"}));
  std::optional<DiscoveryResponse> rds = client.Read();
  REQUIRE(rds);
  REQUIRE(client.Ack(*rds));
  REQUIRE(server.ads.WaitForStream([&](const xds::StreamStatus& stream) {
    return stream.types[static_cast<size_t>(cache::ResourceType::kRoute)].acked_version ==
           rds->version_info();
  }));

  RemoveService(mesh, "svc-1");
  server.ads.SetState(mesh);
  std::optional<DiscoveryResponse> rds2 = client.Read();
  REQUIRE(rds2);
  REQUIRE(rds2->type_url() == kRds);
  REQUIRE(client.Nack(*rds2, "route_config 8080: rejected for the test"));
  REQUIRE(server.ads.WaitForStream([](const xds::StreamStatus& stream) {
    return stream.types[static_cast<size_t>(cache::ResourceType::kRoute)].rejected;
  }));

  HttpResult syncz = server.Get("/debug/syncz");
  REQUIRE(syncz.status == 200);
  json proxy = syncz.Json()[0];
  CHECK(proxy["rejected"] == json{"rds"});
  CHECK(proxy["held"] == json{{"cds", {ClusterName("svc-1")}}});
  CHECK(proxy["types"]["rds"]["rejected"] == true);
  CHECK(proxy["types"]["rds"]["nack_error"] == "route_config 8080: rejected for the test");
  HttpResult metrics = server.Get("/metrics");
  CHECK_THAT(metrics.body, Catch::Contains("meshpilot_xds_held_removals{type=\"cds\"} 1\n"));
  CHECK_THAT(metrics.body, Catch::Contains("meshpilot_xds_held_removals{type=\"eds\"} 0\n"));
}

TEST_CASE("debug: /debug/config_dump answers for the full node id and for POD.NAMESPACE") {
  DebugServer server;
  server.ads.SetState(MakeMesh(2));
  AdsTestClient client(server.ads.port());
  ConnectAndAck(server, client);

  for (const std::string& id : {std::string(kSidecarNodeId), std::string("app-1.default")}) {
    INFO("proxyID=" << id);
    HttpResult dump = server.Get("/debug/config_dump", {{"proxyID", id}});
    REQUIRE(dump.status == 200);
    json body = dump.Json();
    CHECK(body["proxy"]["id"] == kSidecarNodeId);
    CHECK(body["proxy"]["pod"] == "app-1");
    CHECK(body["proxy"]["namespace"] == "default");
    const json& configs = body["configs"];
    REQUIRE(configs.size() == 4);
    CHECK(configs[0]["@type"] == "type.googleapis.com/envoy.admin.v3.ClustersConfigDump");
    CHECK(configs[1]["@type"] == "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump");
    CHECK(configs[2]["@type"] == "type.googleapis.com/envoy.admin.v3.ListenersConfigDump");
    CHECK(configs[3]["@type"] == "type.googleapis.com/envoy.admin.v3.RoutesConfigDump");

    const json& clusters = configs[0]["dynamic_active_clusters"];
    REQUIRE(clusters.size() == 5);  // svc-0, svc-1, the three built-in clusters
    std::set<std::string> names;
    for (const json& cluster : clusters) {
      names.insert(cluster["name"].get<std::string>());
      CHECK(cluster["cluster"]["name"] == cluster["name"]);
      CHECK(cluster["version_info"].get<std::string>().size() == 16);
    }
    CHECK(names.contains(ClusterName("svc-0")));
    CHECK(names.contains("PassthroughCluster"));
    CHECK(configs[1]["dynamic_endpoint_configs"].size() == 2);
    CHECK(configs[2]["dynamic_listeners"].size() == 3);  // with virtualInbound
    REQUIRE(configs[3]["dynamic_route_configs"].size() == 1);
    CHECK(configs[3]["dynamic_route_configs"][0]["route_config"]["name"] == "8080");
  }
}

TEST_CASE("debug: /debug/config_dump of an unknown proxy is 404 with a JSON error") {
  DebugServer server;
  server.ads.SetState(MakeMesh(1));
  AdsTestClient client(server.ads.port());
  ConnectAndAck(server, client);
  HttpResult dump = server.Get("/debug/config_dump", {{"proxyID", "nobody.default"}});
  CHECK(dump.status == 404);
  json body = dump.Json();
  REQUIRE(body.contains("error"));
  CHECK_THAT(body["error"].get<std::string>(), Catch::Contains("nobody.default"));
}

TEST_CASE("debug: /debug/config_dump without proxyID is 400") {
  DebugServer server;
  server.ads.SetState(MakeMesh(1));
  HttpResult dump = server.Get("/debug/config_dump");
  CHECK(dump.status == 400);
  json body = dump.Json();
  REQUIRE(body.contains("error"));
  CHECK_THAT(body["error"].get<std::string>(), Catch::Contains("proxyID"));
}

TEST_CASE("debug: /debug/registryz lists services with their ports") {
  DebugServer server;
  model::MeshState mesh = MakeMesh(2);
  AddService(mesh, "db", 5432, model::Protocol::kTcp, 1, "10.96.100.1");
  server.ads.SetState(mesh);

  HttpResult registry = server.Get("/debug/registryz");
  REQUIRE(registry.status == 200);
  json services = registry.Json();
  REQUIRE(services.size() == 3);
  std::map<std::string, json> by_host;
  for (const json& service : services) by_host[service["hostname"]] = service;
  REQUIRE(by_host.contains("db.default.svc.cluster.local"));
  const json& db = by_host["db.default.svc.cluster.local"];
  CHECK(db["namespace"] == "default");
  CHECK(db["cluster_ip"] == "10.96.100.1");
  REQUIRE(db["ports"].size() == 1);
  CHECK(db["ports"][0]["port"] == 5432);
  CHECK(db["ports"][0]["protocol"] == "TCP");
  REQUIRE(by_host.contains("svc-1.default.svc.cluster.local"));
  CHECK(by_host["svc-1.default.svc.cluster.local"]["ports"][0]["protocol"] == "HTTP");
}

TEST_CASE("debug: /debug/endpointz lists the endpoints of each service") {
  DebugServer server;
  model::MeshState mesh = MakeMesh(2, 3);
  server.ads.SetState(mesh);

  HttpResult endpointz = server.Get("/debug/endpointz");
  REQUIRE(endpointz.status == 200);
  json services = endpointz.Json();
  REQUIRE(services.size() == 2);
  CHECK(services[0]["service"] == "default/svc-0");
  REQUIRE(services[0]["endpoints"].size() == 3);
  const json& first = services[0]["endpoints"][0];
  const model::Endpoint& expected = mesh.endpoints["default/svc-0"][0];
  CHECK(first["address"] == expected.address);
  CHECK(first["port"] == 8080);
  CHECK(first["ready"] == true);
  CHECK(first["locality"] == "us-east1/us-east1-a/");
}

TEST_CASE("debug: /debug/configz shows accepted config and rejected config with its message") {
  DebugServer server;
  model::MeshState mesh = MakeMesh(1);
  model::VirtualService vs;
  vs.meta.name = "reviews";
  vs.meta.namespace_ = "default";
  vs.meta.resource_version = "42";
  vs.hosts = {"svc-0"};
  mesh.virtual_services[vs.meta.Key()] = vs;
  mesh.errors.push_back(model::ConfigError{
      .origin = "config/bad.yaml[1]",
      .kind = "VirtualService",
      .namespace_ = "default",
      .name = "broken",
      .message = "spec.http[0].route[1].weight: must be >= 0",
  });
  server.ads.SetState(mesh);

  HttpResult configz = server.Get("/debug/configz");
  REQUIRE(configz.status == 200);
  json body = configz.Json();
  REQUIRE(body["configs"].size() == 1);
  CHECK(body["configs"][0]["kind"] == "VirtualService");
  CHECK(body["configs"][0]["name"] == "reviews");
  CHECK(body["configs"][0]["status"] == "Accepted");
  REQUIRE(body["errors"].size() == 1);
  const json& error = body["errors"][0];
  CHECK(error["kind"] == "VirtualService");
  CHECK(error["name"] == "broken");
  CHECK(error["origin"] == "config/bad.yaml[1]");
  CHECK(error["status"] == "Rejected");
  CHECK(error["message"] == "spec.http[0].route[1].weight: must be >= 0");
}

TEST_CASE("debug: /debug/configz shows what translation warns about") {
  DebugServer server;
  model::MeshState mesh = MakeMesh(1);
  model::VirtualService vs;
  vs.meta.name = "to-nowhere";
  vs.meta.namespace_ = "default";
  vs.hosts = {"svc-0"};
  model::HttpRoute rule;
  model::HttpRouteDestination destination;
  destination.destination.host = "no-such-service";
  rule.route.push_back(destination);
  vs.http.push_back(rule);
  mesh.virtual_services[vs.meta.Key()] = vs;
  server.ads.SetState(mesh);

  json body = server.Get("/debug/configz").Json();
  REQUIRE(body["warnings"].size() == 1);
  CHECK(body["warnings"][0]["name"] == "to-nowhere");
  CHECK(body["warnings"][0]["status"] == "Warning");
  CHECK(body["warnings"][0]["type"] ==
        json{{"name", "ReferencedResourceNotFound"}, {"code", "IST0101"}});
  CHECK(body["warnings"][0]["message"].get<std::string>().find("no-such-service") !=
        std::string::npos);
}

TEST_CASE("debug: /debug/adsz lists connected clients and their watches") {
  DebugServer server;
  server.ads.SetState(MakeMesh(2));
  AdsTestClient client(server.ads.port());
  ConnectAndAck(server, client);
  REQUIRE(client.Send(kEds, {ClusterName("svc-1")}));
  REQUIRE(client.Read());
  REQUIRE(server.ads.WaitForStream([](const xds::StreamStatus& stream) {
    return stream.types[static_cast<size_t>(cache::ResourceType::kEndpoint)].subscribed;
  }));

  HttpResult adsz = server.Get("/debug/adsz");
  REQUIRE(adsz.status == 200);
  json body = adsz.Json();
  CHECK(body["totalClients"] == 1);
  REQUIRE(body["clients"].size() == 1);
  const json& entry = body["clients"][0];
  CHECK_THAT(entry["connectionId"].get<std::string>(),
             Catch::StartsWith(std::string(kSidecarNodeId) + "-"));
  CHECK_THAT(entry["address"].get<std::string>(), Catch::Contains("127.0.0.1"));
  CHECK(entry["proxy"]["id"] == kSidecarNodeId);
  CHECK(entry["proxy"]["generator"] == "envoy");
  CHECK_FALSE(entry["connectedAt"].get<std::string>().empty());
  const json& watches = entry["watches"];
  CHECK(watches[kCds] == json::array({"*"}));
  CHECK(watches[kLds] == json::array({"*"}));
  CHECK(watches[kEds] == json::array({ClusterName("svc-1")}));
  CHECK_FALSE(watches.contains(kRds));
}

}  // namespace meshpilot::testing
