// Applying xDS responses: ACK and NACK decisions, per-resource isolation of bad config, the
// EDS/RDS names the applied config needs, and the ProxyConfig built from it.

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "sidecar/xds/xds_state.h"
#include "tests/sidecar/proto_json.h"

namespace meshpilot::sidecar {
namespace {

using envoy::service::discovery::v3::DiscoveryResponse;
using testing::FromJson;

template <typename T>
DiscoveryResponse Response(const std::string& version, const std::vector<std::string>& resources) {
  DiscoveryResponse response;
  response.set_version_info(version);
  response.set_nonce("n-" + version);
  for (const std::string& json : resources) response.add_resources()->PackFrom(FromJson<T>(json));
  response.set_type_url(response.resources_size() > 0 ? response.resources(0).type_url() : "");
  return response;
}

std::string EdsCluster(const std::string& name, const std::string& extra = "") {
  return R"({"name": ")" + name + R"(", "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}}, "service_name": ")" +
         name + R"("}, "connect_timeout": "1s")" + extra + "}";
}

std::string HttpListener(const std::string& name, int port, const std::string& rds) {
  return R"({"name": ")" + name + R"(", "address": {"socket_address": {"address": "127.0.0.1", "port_value": )" +
         std::to_string(port) + R"(}}, "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
      "stat_prefix": "s", "rds": {"config_source": {"ads": {}}, "route_config_name": ")" + rds + R"("},
      "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})";
}

using Cluster = envoy::config::cluster::v3::Cluster;
using Listener = envoy::config::listener::v3::Listener;
using Cla = envoy::config::endpoint::v3::ClusterLoadAssignment;
using RouteConfiguration = envoy::config::route::v3::RouteConfiguration;

// Empty ClusterLoadAssignments for these clusters, so they warm.
void NoEndpoints(xds::XdsState& state, const std::vector<std::string>& clusters,
                 const std::string& version = "e1") {
  std::vector<std::string> resources;
  for (const auto& name : clusters) resources.push_back(R"({"cluster_name": ")" + name + R"("})");
  REQUIRE(state.Apply(XdsType::kEndpoint, Response<Cla>(version, resources)) == "");
}

void EmptyRoutes(xds::XdsState& state, const std::vector<std::string>& names,
                 const std::string& version = "r1") {
  std::vector<std::string> resources;
  for (const auto& name : names) {
    resources.push_back(R"({"name": ")" + name + R"(", "virtual_hosts": [{"name": "v", "domains": ["*"]}]})");
  }
  REQUIRE(state.Apply(XdsType::kRoute, Response<RouteConfiguration>(version, resources)) == "");
}

TEST_CASE("xds: valid clusters are ACKed and name the endpoints to subscribe to") {
  StatsStore stats;
  xds::XdsState state(stats);
  CHECK(state.Apply(XdsType::kCluster, Response<Cluster>("1", {EdsCluster("a"), EdsCluster("b")})) == "");
  CHECK(state.AckedVersion(XdsType::kCluster) == "1");
  CHECK(state.Subscription(XdsType::kEndpoint) == std::vector<std::string>{"a", "b"});
  CHECK(state.Subscription(XdsType::kCluster).empty());  // wildcard
  CHECK(state.Apply(XdsType::kEndpoint, Response<Cla>("e1", {R"({"cluster_name": "a", "endpoints": [
      {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}}},
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.2", "port_value": 9}}},
                         "health_status": "UNHEALTHY"}]}]})"})) == "");
  auto config = state.Build();
  REQUIRE(config->FindCluster("a") != nullptr);
  CHECK(config->FindCluster("a")->lb->Hosts().size() == 1);  // only the healthy one
  CHECK(config->FindCluster("b") == nullptr);               // warming: no endpoints yet
  CHECK_FALSE(config->initialized);                          // LDS not received yet
  NoEndpoints(state, {"b"}, "e2");
  CHECK(state.Build()->FindCluster("b")->lb->empty());
}

TEST_CASE("xds: a bad cluster is NACKed with its name and field, the rest still applies") {
  StatsStore stats;
  xds::XdsState state(stats);
  REQUIRE(state.Apply(XdsType::kCluster, Response<Cluster>("1", {EdsCluster("a"), EdsCluster("b")})) == "");
  NoEndpoints(state, {"a", "b"});
  state.Build();
  std::string error = state.Apply(
      XdsType::kCluster,
      Response<Cluster>("2", {EdsCluster("a", R"(, "lb_policy": "CLUSTER_PROVIDED")"), EdsCluster("b"),
                              EdsCluster("c")}));
  CHECK(error ==
        "Cluster \"a\": lb_policy: CLUSTER_PROVIDED needs type ORIGINAL_DST");
  CHECK(state.AckedVersion(XdsType::kCluster) == "1");
  NoEndpoints(state, {"a", "b", "c"}, "e2");
  auto config = state.Build();
  // "a" keeps its previous version; "c" is new and valid, so it applies.
  REQUIRE(config->FindCluster("a") != nullptr);
  CHECK(config->FindCluster("a")->config->lb_policy == config::LbPolicy::kRoundRobin);
  CHECK(config->FindCluster("c") != nullptr);
  CHECK(config->dump[static_cast<size_t>(XdsType::kCluster)].last_error == error);
  CHECK(config->FindCluster("c")->config->circuit_breakers.max_requests == 1024);  // Envoy's default
  CHECK(stats.xds_nack.load() == 1);
}

TEST_CASE("xds: circuit breaker thresholds of the default priority") {
  StatsStore stats;
  xds::XdsState state(stats);
  REQUIRE(state.Apply(XdsType::kCluster, Response<Cluster>("1", {EdsCluster("a", R"(,
      "circuit_breakers": {"thresholds": [{"priority": "HIGH", "max_requests": 1},
                                          {"max_connections": 7, "max_requests": 9, "max_retries": 2}]})")})) == "");
  NoEndpoints(state, {"a"});
  const auto& cb = state.Build()->FindCluster("a")->config->circuit_breakers;
  CHECK(cb.max_connections == 7);
  CHECK(cb.max_requests == 9);
  CHECK(cb.max_retries == 2);
  CHECK(cb.max_pending_requests == 1024);
}

TEST_CASE("xds: listeners need their route configs, and a removed listener drops its routes") {
  StatsStore stats;
  xds::XdsState state(stats);
  REQUIRE(state.Apply(XdsType::kCluster, Response<Cluster>("1", {EdsCluster("a")})) == "");
  NoEndpoints(state, {"a"});
  REQUIRE(state.Apply(XdsType::kListener, Response<Listener>("1", {HttpListener("l1", 1001, "r1"),
                                                                  HttpListener("l2", 1002, "r2")})) == "");
  CHECK(state.Subscription(XdsType::kRoute) == std::vector<std::string>{"r1", "r2"});
  REQUIRE(state.Apply(XdsType::kRoute,
                      Response<envoy::config::route::v3::RouteConfiguration>(
                          "1", {R"({"name": "r1", "virtual_hosts": [{"name": "v", "domains": ["*"]}]})",
                                R"({"name": "r2", "virtual_hosts": [{"name": "v", "domains": ["*"]}]})"})) == "");
  auto config = state.Build();
  CHECK(config->initialized);
  CHECK(config->routes.size() == 2);
  CHECK(config->ListenerForDestination(boost::asio::ip::tcp::endpoint(
            boost::asio::ip::make_address("127.0.0.1"), 1002))->config->name == "l2");
  REQUIRE(state.Apply(XdsType::kListener, Response<Listener>("2", {HttpListener("l1", 1001, "r1")})) == "");
  CHECK(state.Subscription(XdsType::kRoute) == std::vector<std::string>{"r1"});
  config = state.Build();
  CHECK(config->FindListener("l2") == nullptr);
  CHECK(config->routes.size() == 1);
}

TEST_CASE("xds: listener errors carry the filter's field path") {
  StatsStore stats;
  xds::XdsState state(stats);
  std::string listener = HttpListener("l1", 1001, "r1");
  std::string bad = listener;
  bad.replace(bad.find("envoy.extensions.filters.http.router.v3.Router"),
              std::string("envoy.extensions.filters.http.router.v3.Router").size(),
              "envoy.extensions.filters.http.fault.v3.HTTPFault");
  std::string error = state.Apply(XdsType::kListener, Response<Listener>("1", {bad}));
  CHECK(error ==
        "Listener \"l1\": filter_chains[0].filters[0].typed_config.http_filters[0]: the last HTTP "
        "filter must be envoy.filters.http.router, not \"envoy.filters.http.router\"");
  CHECK(state.Build()->FindListener("l1") == nullptr);
}

TEST_CASE("xds: upgrade_configs of the connection manager and of routes") {
  auto listener = [](const std::string& upgrades) {
    std::string json = HttpListener("l1", 1001, "r1");
    json.insert(json.find(R"("stat_prefix")"), R"("upgrade_configs": )" + upgrades + ", ");
    return config::ParseListener(FromJson<Listener>(json));
  };
  auto parsed = listener(R"([{"upgrade_type": "WebSocket"}, {"upgrade_type": "CONNECT", "enabled": false}])");
  REQUIRE(parsed.ok());
  const auto& http = std::get<config::HttpChain>((*parsed)->chains[0].filter);
  CHECK(http.upgrades == std::map<std::string, bool>{{"websocket", true}, {"connect", false}});
  CHECK(listener(R"([{"upgrade_type": ""}])").status().message() ==
        "filter_chains[0].filters[0].typed_config.upgrade_configs[0].upgrade_type: empty");
  CHECK(listener(R"([{"upgrade_type": "websocket"}, {"upgrade_type": "WEBSOCKET"}])")
            .status().message() ==
        "filter_chains[0].filters[0].typed_config.upgrade_configs[1].upgrade_type: "
        "\"WEBSOCKET\" given twice");

  auto routes = [](const std::string& upgrades) {
    return config::ParseRouteConfiguration(FromJson<envoy::config::route::v3::RouteConfiguration>(
        R"({"name": "r1", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
          {"match": {"prefix": "/"}, "route": {"cluster": "c", "upgrade_configs": )" +
        upgrades + "}}]}]}"));
  };
  auto table = routes(R"([{"upgrade_type": "websocket", "enabled": false}])");
  REQUIRE(table.ok());
  const auto& action = std::get<config::RouteAction>((*table)->virtual_hosts[0].routes[0].action);
  CHECK(action.upgrades == std::map<std::string, bool>{{"websocket", false}});
  auto empty = routes(R"([{"upgrade_type": ""}])");
  REQUIRE_FALSE(empty.ok());
  CHECK(absl::StrContains(empty.status().message(), "upgrade_configs[0].upgrade_type: empty"));
}

TEST_CASE("xds: load balancers survive rebuilds that do not touch their cluster") {
  StatsStore stats;
  xds::XdsState state(stats);
  REQUIRE(state.Apply(XdsType::kCluster, Response<Cluster>("1", {EdsCluster("a")})) == "");
  NoEndpoints(state, {"a"});
  auto first = state.Build();
  REQUIRE(state.Apply(XdsType::kListener, Response<Listener>("1", {HttpListener("l1", 1001, "r1")})) == "");
  EmptyRoutes(state, {"r1"});
  auto second = state.Build();
  CHECK(first->FindCluster("a")->lb == second->FindCluster("a")->lb);
  CHECK(first->FindCluster("a")->stats == second->FindCluster("a")->stats);
  // A new version with the same bytes keeps the parsed objects too.
  REQUIRE(state.Apply(XdsType::kCluster, Response<Cluster>("2", {EdsCluster("a")})) == "");
  REQUIRE(state.Apply(XdsType::kListener, Response<Listener>("2", {HttpListener("l1", 1001, "r1")})) == "");
  auto third = state.Build();
  CHECK(third->FindCluster("a")->lb == first->FindCluster("a")->lb);
  CHECK(third->FindListener("l1")->config == second->FindListener("l1")->config);
  CHECK(third->dump[static_cast<size_t>(XdsType::kListener)].resources[0].version == "2");
}

// A ClusterLoadAssignment of cluster `name` with endpoints 127.0.0.1:PORT.
std::string Assignment(const std::string& name, const std::vector<int>& ports) {
  std::string endpoints;
  for (int port : ports) {
    if (!endpoints.empty()) endpoints += ", ";
    endpoints += R"({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": )" +
                 std::to_string(port) + "}}}}";
  }
  return R"({"cluster_name": ")" + name + R"(", "endpoints": [{"lb_endpoints": [)" + endpoints + "]}]}";
}

TEST_CASE("xds: every priority of an assignment is kept, in order, with its unhealthy count") {
  auto parsed = config::ParseClusterLoadAssignment(FromJson<Cla>(R"({"cluster_name": "c",
    "endpoints": [
      {"priority": 2, "locality": {"zone": "c"}, "lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "10.0.0.3", "port_value": 80}}}}]},
      {"locality": {"zone": "a"}, "lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}}},
        {"endpoint": {"address": {"socket_address": {"address": "10.0.0.9", "port_value": 80}}},
         "health_status": "UNHEALTHY"}]},
      {"priority": 1, "locality": {"zone": "b"}, "lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "10.0.0.8", "port_value": 80}}},
         "health_status": "DRAINING"}]}]})"));
  REQUIRE(parsed.ok());
  const auto& localities = (*parsed)->localities;
  REQUIRE(localities.size() == 3);
  CHECK(localities[0].zone == "/a/");
  CHECK(localities[0].endpoints.size() == 1);
  CHECK(localities[0].unhealthy == 1);
  CHECK(localities[1].priority == 1);
  CHECK(localities[1].endpoints.empty());
  CHECK(localities[1].unhealthy == 1);
  CHECK(localities[2].priority == 2);
  CHECK(localities[2].endpoints[0].address.address().to_string() == "10.0.0.3");
}

TEST_CASE("xds: slow start counts from when an endpoint joined, across EDS updates") {
  using std::chrono::seconds;
  StatsStore stats;
  xds::XdsState state(stats);
  REQUIRE(state.Apply(XdsType::kCluster,
                      Response<Cluster>("1", {EdsCluster("a", R"(, "lb_policy": "ROUND_ROBIN",
                        "round_robin_lb_config": {"slow_start_config": {"slow_start_window": "10s",
                          "min_weight_percent": {"value": 10}}})")})) == "");
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(state.Apply(XdsType::kEndpoint, Response<Cla>("e1", {Assignment("a", {1, 2})})) == "");
  state.Build(t0);
  auto share_of = [](const ProxyConfig& config, int port, std::chrono::steady_clock::time_point at) {
    std::mt19937_64 rng(1);
    int hits = 0;
    for (int i = 0; i < 10000; ++i) {
      hits += config.FindCluster("a")->lb->Pick(rng, nullptr, std::nullopt, at)->address.port() == port;
    }
    return hits / 10000.0;
  };
  // 20 s later, endpoint 3 joins: 1 and 2 are past their window, 3 starts at 10%.
  REQUIRE(state.Apply(XdsType::kEndpoint, Response<Cla>("e2", {Assignment("a", {1, 2, 3})})) == "");
  auto second = state.Build(t0 + seconds(20));
  CHECK(share_of(*second, 3, t0 + seconds(20)) == Approx(0.1 / 2.1).epsilon(0.2));
  // Another update 5 s later (endpoint 4 joins): 3 keeps its join time (about 0.5 now), 4 starts.
  REQUIRE(state.Apply(XdsType::kEndpoint, Response<Cla>("e3", {Assignment("a", {1, 2, 3, 4})})) == "");
  auto third = state.Build(t0 + seconds(25));
  CHECK(second->FindCluster("a")->lb != third->FindCluster("a")->lb);
  CHECK(share_of(*third, 3, t0 + seconds(25)) == Approx(0.5 / 2.6).epsilon(0.15));
  CHECK(share_of(*third, 4, t0 + seconds(25)) == Approx(0.1 / 2.6).epsilon(0.2));
  CHECK(share_of(*third, 1, t0 + seconds(36)) == Approx(0.25).epsilon(0.05));
  // An endpoint that leaves and comes back joins anew.
  REQUIRE(state.Apply(XdsType::kEndpoint, Response<Cla>("e4", {Assignment("a", {1, 2, 4})})) == "");
  state.Build(t0 + seconds(40));
  REQUIRE(state.Apply(XdsType::kEndpoint, Response<Cla>("e5", {Assignment("a", {1, 2, 3, 4})})) == "");
  auto back = state.Build(t0 + seconds(41));
  CHECK(share_of(*back, 3, t0 + seconds(41)) == Approx(0.1 / 3.1).epsilon(0.2));
}

TEST_CASE("xds: slow start config is parsed and validated") {
  StatsStore stats;
  xds::XdsState state(stats);
  std::string error = state.Apply(
      XdsType::kCluster,
      Response<Cluster>("1", {EdsCluster("a", R"(, "lb_policy": "LEAST_REQUEST",
        "least_request_lb_config": {"slow_start_config": {"slow_start_window": "10s",
          "aggression": {"default_value": 0, "runtime_key": "k"}}})")}));
  CHECK(error == "Cluster \"a\": least_request_lb_config.slow_start_config.aggression.default_value: must be > 0");
}

TEST_CASE("xds warming: a listener is not in service until its route config arrives") {
  StatsStore stats;
  xds::XdsState state(stats);
  REQUIRE(state.Apply(XdsType::kCluster, Response<Cluster>("1", {})) == "");
  REQUIRE(state.Apply(XdsType::kListener, Response<Listener>("1", {HttpListener("l1", 1001, "r1")})) == "");
  auto config = state.Build();
  CHECK(config->FindListener("l1") == nullptr);
  CHECK_FALSE(config->initialized);  // Envoy is not ready until its first listeners warmed
  CHECK(state.Subscription(XdsType::kRoute) == std::vector<std::string>{"r1"});
  EmptyRoutes(state, {"r1"});
  config = state.Build();
  REQUIRE(config->FindListener("l1") != nullptr);
  CHECK(config->initialized);

  // A new version waiting for another route config: the old one keeps serving meanwhile.
  const auto* old_version = config->FindListener("l1")->config.get();
  REQUIRE(state.Apply(XdsType::kListener, Response<Listener>("2", {HttpListener("l1", 1001, "r2")})) == "");
  CHECK(state.Subscription(XdsType::kRoute) == std::vector<std::string>{"r1", "r2"});
  config = state.Build();
  CHECK(config->FindListener("l1")->config.get() == old_version);
  CHECK(config->routes.contains("r1"));
  EmptyRoutes(state, {"r2"}, "r2");
  config = state.Build();
  CHECK(config->FindListener("l1")->config.get() != old_version);
  CHECK(std::get<config::HttpChain>(config->FindListener("l1")->config->chains[0].filter).rds_name == "r2");
  CHECK(config->initialized);
  // A listener removed while warming is gone.
  REQUIRE(state.Apply(XdsType::kListener, Response<Listener>("3", {})) == "");
  CHECK(state.Build()->FindListener("l1") == nullptr);
}

TEST_CASE("xds warming: an EDS cluster warms until its assignment; an updated one keeps serving") {
  StatsStore stats;
  xds::XdsState state(stats);
  REQUIRE(state.Apply(XdsType::kCluster, Response<Cluster>("1", {EdsCluster("a")})) == "");
  CHECK(state.Build()->FindCluster("a") == nullptr);
  NoEndpoints(state, {"a"});
  REQUIRE(state.Build()->FindCluster("a") != nullptr);
  // A new version with another service name waits for that one's assignment.
  std::string renamed = EdsCluster("a", R"(, "lb_policy": "RANDOM")");
  renamed.replace(renamed.find(R"("service_name": "a")"), 19, R"("service_name": "b")");
  REQUIRE(state.Apply(XdsType::kCluster, Response<Cluster>("2", {renamed})) == "");
  CHECK(state.Subscription(XdsType::kEndpoint) == std::vector<std::string>{"a", "b"});
  CHECK(state.Build()->FindCluster("a")->config->lb_policy == config::LbPolicy::kRoundRobin);
  NoEndpoints(state, {"b"}, "e2");
  CHECK(state.Build()->FindCluster("a")->config->lb_policy == config::LbPolicy::kRandom);
}

TEST_CASE("xds warming: initial_fetch_timeout puts a warming resource into service") {
  StatsStore stats;
  xds::XdsState state(stats);
  const auto t0 = std::chrono::steady_clock::now();
  std::string forever = EdsCluster("forever");
  forever.replace(forever.find(R"("ads": {})"), 9, R"("ads": {}, "initial_fetch_timeout": "0s")");
  REQUIRE(state.Apply(XdsType::kCluster, Response<Cluster>("1", {EdsCluster("a"), forever})) == "");
  REQUIRE(state.Apply(XdsType::kListener, Response<Listener>("1", {HttpListener("l1", 1001, "r1")})) == "");
  auto config = state.Build();
  const auto t1 = std::chrono::steady_clock::now();
  CHECK(config->FindCluster("a") == nullptr);
  CHECK(config->FindListener("l1") == nullptr);
  REQUIRE(state.NextWarmingDeadline());
  const auto deadline = *state.NextWarmingDeadline();  // Envoy's default, 15 s from applying
  CHECK(deadline >= t0 + std::chrono::seconds(15));
  CHECK(deadline <= t1 + std::chrono::seconds(15));
  config = state.Build(deadline - std::chrono::milliseconds(1));
  CHECK(config->FindListener("l1") == nullptr);
  config = state.Build(deadline + std::chrono::milliseconds(1000));
  // In service without what it waited for: no hosts, no routes (404).
  REQUIRE(config->FindCluster("a") != nullptr);
  CHECK(config->FindCluster("a")->lb->empty());
  REQUIRE(config->FindListener("l1") != nullptr);
  CHECK(config->routes.empty());
  // initial_fetch_timeout 0s waits for ever.
  CHECK(config->FindCluster("forever") == nullptr);
  CHECK_FALSE(state.NextWarmingDeadline());
  CHECK(state.Build(t0 + std::chrono::hours(1))->FindCluster("forever") == nullptr);
}

}  // namespace
}  // namespace meshpilot::sidecar
