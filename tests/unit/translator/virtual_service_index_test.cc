#include <catch2/catch.hpp>

#include "tests/unit/translator/traffic_test_util.h"
#include "translator/names.h"
#include "translator/virtual_service_index.h"

namespace meshpilot::translator {
namespace {

using namespace traffic_testing;

std::vector<std::string> Keys(const std::vector<const model::VirtualService*>& services) {
  std::vector<std::string> keys;
  for (const model::VirtualService* vs : services) keys.push_back(vs->meta.Key());
  return keys;
}

const model::Service& Reviews(const model::MeshState& state) {
  return state.services.at("default/reviews");
}

TEST_CASE("hosts resolve as Istio resolves them", "[host]") {
  CHECK(ResolveHost("reviews", "default") == "reviews.default.svc.cluster.local");
  CHECK(ResolveHost("reviews", "shop") == "reviews.shop.svc.cluster.local");
  // Anything with a dot is taken as written, so "reviews.default" is not the service.
  CHECK(ResolveHost("reviews.default", "shop") == "reviews.default");
  CHECK(ResolveHost("reviews.default.svc.cluster.local", "shop") ==
        "reviews.default.svc.cluster.local");
  CHECK(ResolveHost("*.default.svc.cluster.local", "shop") == "*.default.svc.cluster.local");

  CHECK(HostMatches("reviews.default.svc.cluster.local", "*.default.svc.cluster.local"));
  CHECK(HostMatches("reviews.default.svc.cluster.local", "*.svc.cluster.local"));
  CHECK(HostMatches("reviews.default.svc.cluster.local", "*"));
  CHECK_FALSE(HostMatches("reviews.default.svc.cluster.local", "*.shop.svc.cluster.local"));
  CHECK_FALSE(HostMatches("reviews.default.svc.cluster.local", "reviews.default"));
  CHECK(HostSpecificity("reviews.default.svc.cluster.local") >
        HostSpecificity("*.default.svc.cluster.local"));
  CHECK(HostSpecificity("*.default.svc.cluster.local") > HostSpecificity("*"));
}

TEST_CASE("exportTo limits which namespaces see a config", "[host]") {
  CHECK(IsExportedTo({}, "a", "b"));
  CHECK(IsExportedTo({"*"}, "a", "b"));
  CHECK(IsExportedTo({"."}, "a", "a"));
  CHECK_FALSE(IsExportedTo({"."}, "a", "b"));
  CHECK(IsExportedTo({"b", "c"}, "a", "b"));
  CHECK_FALSE(IsExportedTo({"~"}, "a", "a"));
}

TEST_CASE("a short VirtualService host names the service in the VS's namespace", "[vs_index]") {
  model::MeshState state = Mesh();
  AddVirtualService(state, "default", "short", {"reviews"}).http.push_back(RouteTo("reviews"));
  AddVirtualService(state, "shop", "elsewhere", {"reviews"}).http.push_back(RouteTo("reviews"));
  VirtualServiceIndex index(state, Sidecar());
  CHECK(Keys(index.ForService(Reviews(state))) == std::vector<std::string>{"default/short"});
}

TEST_CASE("exportTo and gateways decide which VirtualServices a proxy sees", "[vs_index]") {
  model::MeshState state = Mesh();
  model::VirtualService& local = AddVirtualService(state, "default", "local-only",
                                                   {"reviews.default.svc.cluster.local"});
  local.export_to = {"."};
  local.http.push_back(RouteTo("reviews"));
  model::VirtualService& gateway = AddVirtualService(state, "default", "gateway-only",
                                                     {"reviews.default.svc.cluster.local"});
  gateway.gateways = {"istio-system/ingress"};
  gateway.http.push_back(RouteTo("reviews"));
  model::VirtualService& both = AddVirtualService(state, "default", "mesh-and-gateway",
                                                  {"reviews.default.svc.cluster.local"});
  both.gateways = {"istio-system/ingress", "mesh"};
  both.http.push_back(RouteTo("reviews"));

  CHECK(Keys(VirtualServiceIndex(state, Sidecar("default")).ForService(Reviews(state))) ==
        std::vector<std::string>{"default/local-only", "default/mesh-and-gateway"});
  CHECK(Keys(VirtualServiceIndex(state, Sidecar("shop")).ForService(Reviews(state))) ==
        std::vector<std::string>{"default/mesh-and-gateway"});
}

TEST_CASE("the most specific host wins and equal ones merge in namespace/name order",
          "[vs_index]") {
  model::MeshState state = Mesh();
  AddVirtualService(state, "default", "wild", {"*.default.svc.cluster.local"})
      .http.push_back(RouteTo("reviews"));
  VirtualServiceIndex wildcard_only(state, Sidecar());
  CHECK(Keys(wildcard_only.ForService(Reviews(state))) == std::vector<std::string>{"default/wild"});

  AddVirtualService(state, "shop", "b", {"reviews.default.svc.cluster.local"})
      .http.push_back(RouteTo("reviews"));
  AddVirtualService(state, "default", "z", {"reviews"}).http.push_back(RouteTo("reviews"));
  VirtualServiceIndex index(state, Sidecar());
  CHECK(Keys(index.ForService(Reviews(state))) ==
        std::vector<std::string>{"default/z", "shop/b"});
  CHECK(index.visible().size() == 3);
}

TEST_CASE("merged VirtualServices: rules appended in order, stopping at a catch-all",
          "[vs_index][route]") {
  model::MeshState state = Mesh();
  AddDestinationRule(state, "default", "reviews", "reviews");
  AddVersionSubsets(state.destination_rules.at("default/reviews"));
  model::HttpRoute v2 = RouteTo("reviews", "v2");
  v2.match.push_back({.headers = {{"end-user", {model::StringMatch::Type::kExact, "jason"}}}});
  AddVirtualService(state, "default", "a-canary", {"reviews"}).http.push_back(v2);
  AddVirtualService(state, "default", "b-default", {"reviews"})
      .http.push_back(RouteTo("reviews", "v1"));
  AddVirtualService(state, "default", "c-shadowed", {"reviews"})
      .http.push_back(RouteTo("reviews", "v2"));

  auto routes = ReviewsRoutes(state, Sidecar());
  REQUIRE(routes.size() == 2);
  CHECK(routes[0].route().cluster() == "outbound|9080|v2|reviews.default.svc.cluster.local");
  CHECK(routes[1].route().cluster() == "outbound|9080|v1|reviews.default.svc.cluster.local");

  auto errors = CheckVirtualServices(state);
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].name == "b-default");
  CHECK(errors[0].message.find("merged in that order") != std::string::npos);
  CHECK(errors[0].type.code == "IST0109");
  CHECK(errors[1].name == "c-shadowed");
  CHECK(errors[1].type.code == "IST0109");
  CHECK(errors[2].name == "c-shadowed");
  CHECK(errors[2].type.name == "VirtualServiceUnreachableRule");
  CHECK(errors[2].type.code == "IST0130");
  CHECK(errors[2].message ==
        "spec.http: the rules of this VirtualService for host reviews.default.svc.cluster.local "
        "are unreachable: default/b-default, merged before it, has a rule that matches every "
        "request");
}

TEST_CASE("subsets no DestinationRule defines are referenced resources not found",
          "[vs_index]") {
  model::MeshState state = Mesh();
  AddDestinationRule(state, "default", "reviews", "reviews");
  AddVersionSubsets(state.destination_rules.at("default/reviews"));
  model::VirtualService& vs = AddVirtualService(state, "default", "reviews", {"reviews"});
  vs.http.push_back(RouteTo("reviews", "v1"));
  vs.http.push_back(RouteTo("reviews", "v9"));

  auto errors = CheckVirtualServices(state);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].message ==
        "spec.http[1].route[0].destination.subset: no DestinationRule for "
        "reviews.default.svc.cluster.local defines subset \"v9\"; requests routed there fail "
        "(503)");
  CHECK(errors[0].type.name == "ReferencedResourceNotFound");
  CHECK(errors[0].type.code == "IST0101");

  // Defined by a DestinationRule with a wildcard host, as Istio's analyzer accepts it.
  AddDestinationRule(state, "default", "all", "*.default.svc.cluster.local")
      .subsets.push_back({.name = "v9"});
  CHECK(CheckVirtualServices(state).empty());
}

TEST_CASE("tls rules without a TLS port, gateway-only VirtualServices and unknown hosts are reported",
          "[vs_index]") {
  model::MeshState state = Mesh();
  model::VirtualService& vs = AddVirtualService(state, "default", "reviews", {"reviews"});
  vs.http.push_back(RouteTo("nosuch"));
  model::TcpRoute tcp;
  tcp.route.push_back({model::Destination{"nosuch-db"}, 0});
  vs.tcp.push_back(tcp);
  vs.tls.emplace_back().route.push_back({model::Destination{"nosuch-tls"}, 0});
  model::VirtualService& gateway = AddVirtualService(state, "default", "ingress", {"example.com"});
  gateway.gateways = {"ingress"};
  gateway.http.push_back(RouteTo("reviews"));

  auto errors = CheckVirtualServices(state);
  REQUIRE(errors.size() == 5);
  CHECK(errors[0].name == "ingress");
  CHECK(errors[0].message.rfind("spec.gateways: ", 0) == 0);
  CHECK(errors[1].message.rfind("spec.http[0].route[0].destination.host: \"nosuch\"", 0) == 0);
  CHECK(errors[2].message.rfind("spec.tcp[0].route[0].destination.host: \"nosuch-db\"", 0) == 0);
  // reviews has only an HTTP port: its tls rules would never be used.
  CHECK(errors[3].message.rfind("spec.tls: no Service of this VirtualService's hosts has an "
                                "HTTPS or TLS port", 0) == 0);
  CHECK(errors[4].message.rfind("spec.tls[0].route[0].destination.host: \"nosuch-tls\"", 0) == 0);
  CHECK(errors[1].type.code == "IST0101");
  CHECK(errors[2].type.code == "IST0101");
  CHECK(errors[3].type.name == "NotSupported");
  CHECK(errors[3].type.code.empty());
  CHECK(errors[4].type.code == "IST0101");

  // With an HTTPS port on reviews, its tls rules are used.
  state.services.at("default/reviews")
      .ports.push_back(testing::MakePort("https", 443, model::Protocol::kHttps));
  errors = CheckVirtualServices(state);
  REQUIRE(errors.size() == 4);
  CHECK(errors[3].message.rfind("spec.tls[0].route[0].destination.host", 0) == 0);
}

}  // namespace
}  // namespace meshpilot::translator
