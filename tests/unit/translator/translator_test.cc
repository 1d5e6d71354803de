#include <catch2/catch.hpp>

#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "tests/testing/mesh_builder.h"
#include "translator/translate.h"

namespace meshpilot::translator {
namespace {

using envoy::config::cluster::v3::Cluster;
using envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
using model::Protocol;
using testing::AddService;
using testing::MakeEndpoint;
using testing::MakePort;
using testing::MakeService;

ProxyInfo Sidecar(const std::string& ns = "default") {
  envoy::config::core::v3::Node node;
  node.set_id("sidecar~10.0.0.9~client-1." + ns + "~" + ns + ".svc.cluster.local");
  return *ParseProxyInfo(node);
}

ProxyInfo Grpc(const std::string& ns = "default") {
  envoy::config::core::v3::Node node;
  node.set_id("sidecar~10.0.0.9~client-1." + ns + "~" + ns + ".svc.cluster.local");
  (*node.mutable_metadata()->mutable_fields())["GENERATOR"].set_string_value("grpc");
  return *ParseProxyInfo(node);
}

model::MeshState TwoServices() {
  model::MeshState state;
  AddService(state,
             MakeService("default", "reviews", "10.96.0.10",
                         {MakePort("http", 9080, Protocol::kHttp)}),
             {MakeEndpoint("10.1.0.1", 9080, "http", true, {"us", "us-a", ""}),
              MakeEndpoint("10.1.0.2", 9080, "http", true, {"us", "us-b", ""}),
              MakeEndpoint("10.1.0.3", 9080, "http", false, {"us", "us-b", ""})});
  AddService(state, MakeService("db", "mysql", "10.96.0.20",
                                {MakePort("tcp-mysql", 3306, Protocol::kTcp)}),
             {MakeEndpoint("10.2.0.1", 3306, "tcp-mysql")});
  return state;
}

template <typename T>
std::vector<std::string> Names(const std::vector<T>& resources) {
  std::vector<std::string> names;
  for (const auto& r : resources) names.push_back(r.name());
  return names;
}

TEST_CASE("ParseProxyInfo reads Istio's node id and metadata", "[proxy]") {
  envoy::config::core::v3::Node node;
  node.set_id("sidecar~10.0.0.9~app-7f9.shop~shop.svc.cluster.local");
  auto& labels = *(*node.mutable_metadata()->mutable_fields())["LABELS"].mutable_struct_value();
  (*labels.mutable_fields())["app"].set_string_value("cart");
  auto proxy = ParseProxyInfo(node);
  REQUIRE(proxy.ok());
  CHECK(proxy->type == ProxyInfo::Type::kSidecar);
  CHECK(proxy->ip == "10.0.0.9");
  CHECK(proxy->pod_name == "app-7f9");
  CHECK(proxy->namespace_ == "shop");
  CHECK(proxy->ShortId() == "app-7f9.shop");
  CHECK(proxy->labels.at("app") == "cart");
  CHECK_FALSE(proxy->proxyless_grpc);
}

TEST_CASE("ParseProxyInfo rejects malformed ids with the field named", "[proxy]") {
  envoy::config::core::v3::Node node;
  node.set_id("not-an-istio-id");
  auto proxy = ParseProxyInfo(node);
  REQUIRE_FALSE(proxy.ok());
  CHECK(proxy.status().ToString().find("node.id") != std::string::npos);
  node.set_id("gateway~1.2.3.4~a.b~b.svc.cluster.local");
  CHECK_FALSE(ParseProxyInfo(node).ok());
}

TEST_CASE("an EDS cluster per service port, named outbound|PORT||FQDN", "[cluster]") {
  auto clusters = BuildClusters(TwoServices(), Sidecar());
  CHECK(Names(clusters) == std::vector<std::string>{
                               "BlackHoleCluster", "PassthroughCluster",
                               "outbound|3306||mysql.db.svc.cluster.local",
                               "outbound|9080||reviews.default.svc.cluster.local"});
  const Cluster& reviews = clusters[3];
  CHECK(reviews.type() == Cluster::EDS);
  CHECK(reviews.eds_cluster_config().eds_config().has_ads());
  CHECK(reviews.eds_cluster_config().service_name() == reviews.name());
  CHECK(reviews.lb_policy() == Cluster::LEAST_REQUEST);
}

TEST_CASE("proxyless gRPC gets ROUND_ROBIN clusters and no sidecar builtins", "[cluster]") {
  auto clusters = BuildClusters(TwoServices(), Grpc());
  REQUIRE(clusters.size() == 2);
  for (const Cluster& cluster : clusters) CHECK(cluster.lb_policy() == Cluster::ROUND_ROBIN);
}

TEST_CASE("load assignments group ready endpoints by locality with weights", "[endpoint]") {
  auto assignments = BuildLoadAssignments(TwoServices(), Sidecar());
  REQUIRE(assignments.size() == 2);
  const auto& reviews = assignments[1];
  CHECK(reviews.cluster_name() == "outbound|9080||reviews.default.svc.cluster.local");
  REQUIRE(reviews.endpoints_size() == 2);
  CHECK(reviews.endpoints(0).locality().zone() == "us-a");
  CHECK(reviews.endpoints(0).load_balancing_weight().value() == 1);
  // The not-ready endpoint in us-b is left out.
  CHECK(reviews.endpoints(1).lb_endpoints_size() == 1);
  CHECK(reviews.endpoints(1).lb_endpoints(0).endpoint().address().socket_address().address() ==
        "10.1.0.2");
}

TEST_CASE("endpoints are paired with service ports by port name", "[endpoint]") {
  model::MeshState state;
  AddService(state,
             MakeService("default", "multi", "10.96.0.30",
                         {MakePort("http", 80, Protocol::kHttp, 8080),
                          MakePort("grpc", 90, Protocol::kGrpc, 9090)}),
             {MakeEndpoint("10.1.0.1", 8080, "http"), MakeEndpoint("10.1.0.1", 9090, "grpc")});
  auto assignments = BuildLoadAssignments(state, Sidecar());
  REQUIRE(assignments.size() == 2);
  CHECK(assignments[0].cluster_name() == "outbound|80||multi.default.svc.cluster.local");
  CHECK(assignments[0].endpoints(0).lb_endpoints(0).endpoint().address().socket_address()
            .port_value() == 8080);
  CHECK(assignments[1].endpoints(0).lb_endpoints(0).endpoint().address().socket_address()
            .port_value() == 9090);
}

TEST_CASE("sidecar listeners: virtualOutbound, 0.0.0.0_PORT for HTTP, IP_PORT for TCP",
          "[listener]") {
  auto listeners = BuildListeners(TwoServices(), Sidecar());
  CHECK(Names(listeners) ==
        std::vector<std::string>{"0.0.0.0_9080", "10.96.0.20_3306", "virtualOutbound"});
  const auto& http = listeners[0];
  CHECK_FALSE(http.bind_to_port().value());
  HttpConnectionManager hcm;
  REQUIRE(http.filter_chains(0).filters(0).typed_config().UnpackTo(&hcm));
  CHECK(hcm.rds().route_config_name() == "9080");
  CHECK(hcm.rds().config_source().has_ads());
  CHECK(hcm.http_filters(hcm.http_filters_size() - 1).name() == "envoy.filters.http.router");

  envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy tcp;
  REQUIRE(listeners[1].filter_chains(0).filters(0).typed_config().UnpackTo(&tcp));
  CHECK(tcp.cluster() == "outbound|3306||mysql.db.svc.cluster.local");

  const auto& outbound = listeners[2];
  CHECK(outbound.address().socket_address().port_value() == 15001);
  CHECK(outbound.use_original_dst().value());
}

TEST_CASE("sidecar routes: one config per port, a virtual host per service", "[route]") {
  auto routes = BuildRouteConfigurations(TwoServices(), Sidecar("default"));
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].name() == "9080");
  REQUIRE(routes[0].virtual_hosts_size() == 2);
  const auto& vhost = routes[0].virtual_hosts(0);
  CHECK(vhost.name() == "reviews.default.svc.cluster.local:9080");
  std::vector<std::string> domains(vhost.domains().begin(), vhost.domains().end());
  CHECK(domains == std::vector<std::string>{
                       "reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080",
                       "reviews.default.svc", "reviews.default.svc:9080", "reviews.default",
                       "reviews.default:9080", "reviews", "reviews:9080", "10.96.0.10",
                       "10.96.0.10:9080"});
  CHECK(vhost.routes(0).route().cluster() == "outbound|9080||reviews.default.svc.cluster.local");
  CHECK(routes[0].virtual_hosts(1).domains(0) == "*");
}

TEST_CASE("short host names only resolve in the client's own namespace", "[route]") {
  auto routes = BuildRouteConfigurations(TwoServices(), Sidecar("other"));
  const auto& domains = routes[0].virtual_hosts(0).domains();
  CHECK(std::find(domains.begin(), domains.end(), "reviews") == domains.end());
  CHECK(std::find(domains.begin(), domains.end(), "reviews.default") != domains.end());
}

TEST_CASE("proxyless gRPC: an api_listener per host:port form, routed over RDS", "[grpc]") {
  model::MeshState state = TwoServices();
  auto listeners = BuildListeners(state, Grpc("default"));
  std::vector<std::string> names = Names(listeners);
  for (const char* expected :
       {"reviews.default.svc.cluster.local:9080", "reviews.default.svc:9080",
        "reviews.default:9080", "reviews:9080", "10.96.0.10:9080",
        "mysql.db.svc.cluster.local:3306", "mysql.db:3306"}) {
    CHECK(std::find(names.begin(), names.end(), expected) != names.end());
  }
  CHECK(std::find(names.begin(), names.end(), "mysql:3306") == names.end());
  const auto& listener = *std::find_if(listeners.begin(), listeners.end(), [](const auto& l) {
    return l.name() == "reviews:9080";
  });
  HttpConnectionManager hcm;
  REQUIRE(listener.api_listener().api_listener().UnpackTo(&hcm));
  CHECK(hcm.rds().route_config_name() == "reviews.default.svc.cluster.local:9080");
  CHECK(hcm.http_filters(hcm.http_filters_size() - 1).name() == "envoy.filters.http.router");

  auto routes = BuildRouteConfigurations(state, Grpc("default"));
  CHECK(Names(routes) == std::vector<std::string>{"mysql.db.svc.cluster.local:3306",
                                                  "reviews.default.svc.cluster.local:9080"});
}

TEST_CASE("translation is deterministic", "[translate]") {
  auto a = Translate(TwoServices(), Sidecar());
  auto b = Translate(TwoServices(), Sidecar());
  REQUIRE(a.listeners.size() == b.listeners.size());
  for (size_t i = 0; i < a.listeners.size(); ++i) {
    CHECK(a.listeners[i].SerializeAsString() == b.listeners[i].SerializeAsString());
  }
}

}  // namespace
}  // namespace meshpilot::translator
