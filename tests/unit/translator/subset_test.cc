#include <catch2/catch.hpp>

#include "controlplane/cache/snapshot.h"
#include "tests/unit/translator/traffic_test_util.h"
#include "translator/destination_rule_index.h"
#include "translator/subset.h"

namespace meshpilot::translator {
namespace {

using namespace traffic_testing;

std::vector<std::string> Addresses(const envoy::config::endpoint::v3::ClusterLoadAssignment& cla) {
  std::vector<std::string> out;
  for (const auto& group : cla.endpoints()) {
    for (const auto& endpoint : group.lb_endpoints()) {
      out.push_back(endpoint.endpoint().address().socket_address().address());
    }
  }
  return out;
}

const envoy::config::endpoint::v3::ClusterLoadAssignment* FindAssignment(
    const std::vector<envoy::config::endpoint::v3::ClusterLoadAssignment>& all,
    const std::string& name) {
  for (const auto& cla : all) {
    if (cla.cluster_name() == name) return &cla;
  }
  return nullptr;
}

TEST_CASE("subset clusters select endpoints by their pods' labels", "[subset]") {
  model::MeshState state = Mesh();
  AddVersionSubsets(AddDestinationRule(state, "default", "reviews", "reviews"));
  for (const ProxyInfo& proxy : {Sidecar(), Grpc()}) {
    auto clusters = BuildClusters(state, proxy);
    REQUIRE(FindByName(clusters, "outbound|9080|v1|reviews.default.svc.cluster.local"));
    const auto* v2 = FindByName(clusters, "outbound|9080|v2|reviews.default.svc.cluster.local");
    REQUIRE(v2);
    CHECK(v2->eds_cluster_config().service_name() == v2->name());

    auto assignments = BuildLoadAssignments(state, proxy);
    CHECK(Addresses(*FindAssignment(assignments,
                                    "outbound|9080||reviews.default.svc.cluster.local")) ==
          std::vector<std::string>{"10.1.0.1", "10.1.0.2"});
    CHECK(Addresses(*FindAssignment(assignments,
                                    "outbound|9080|v1|reviews.default.svc.cluster.local")) ==
          std::vector<std::string>{"10.1.0.1"});
    CHECK(Addresses(*FindAssignment(assignments,
                                    "outbound|9080|v2|reviews.default.svc.cluster.local")) ==
          std::vector<std::string>{"10.1.0.2"});
  }
}

TEST_CASE("a subset no DestinationRule defines gets a cluster without endpoints", "[subset]") {
  model::MeshState state = Mesh();
  AddVersionSubsets(AddDestinationRule(state, "default", "reviews", "reviews"));
  AddVirtualService(state, "default", "reviews", {"reviews"})
      .http.push_back(RouteTo("reviews", "v3"));
  const std::string v3 = "outbound|9080|v3|reviews.default.svc.cluster.local";
  for (const ProxyInfo& proxy : {Sidecar(), Grpc()}) {
    ProxyResources resources = Translate(state, proxy);
    CHECK(FindByName(resources.clusters, v3));
    const auto* cla = FindAssignment(resources.endpoints, v3);
    REQUIRE(cla);
    CHECK(cla->endpoints_size() == 0);
    // Every name referenced is present: the snapshot is consistent.
    CHECK(cache::Snapshot::Build(std::move(resources), 1).ok());
  }
}

TEST_CASE("DestinationRule lookup: proxy namespace, then service namespace, then others",
          "[subset]") {
  model::MeshState state = Mesh();
  AddDestinationRule(state, "istio-system", "root", "*.svc.cluster.local");
  AddDestinationRule(state, "default", "owner", "reviews");
  AddDestinationRule(state, "shop", "client", "reviews.default.svc.cluster.local");
  const model::Service& reviews = state.services.at("default/reviews");
  CHECK(DestinationRuleIndex(state, Sidecar("shop")).ForService(reviews)->meta.name == "client");
  CHECK(DestinationRuleIndex(state, Sidecar("default")).ForService(reviews)->meta.name == "owner");
  CHECK(DestinationRuleIndex(state, Sidecar("other")).ForService(reviews)->meta.name == "owner");

  state.destination_rules.at("default/owner").export_to = {"."};
  CHECK(DestinationRuleIndex(state, Sidecar("other")).ForService(reviews)->meta.name == "root");

  model::DestinationRule& selected =
      AddDestinationRule(state, "other", "selected", "reviews.default.svc.cluster.local");
  selected.workload_selector = std::map<std::string, std::string>{{"app", "cart"}};
  CHECK(DestinationRuleIndex(state, Sidecar("other")).ForService(reviews)->meta.name == "root");
  CHECK(DestinationRuleIndex(state, Proxy(false, "other", {{"app", "cart"}}))
            .ForService(reviews)->meta.name == "selected");
}

TEST_CASE("unsupported DestinationRule settings are reported", "[subset]") {
  model::MeshState state = Mesh();
  model::DestinationRule& rule = AddDestinationRule(state, "default", "reviews", "reviews");
  using Mode = model::ClientTlsSettings::Mode;
  // SIMPLE with files is translated; with a credentialName (SDS) it is reported.
  rule.traffic_policy.emplace().tls =
      model::ClientTlsSettings{.mode = Mode::kSimple, .credential_name = "reviews-ca"};
  rule.traffic_policy->port_level_settings.push_back(
      {.port = 9080,
       .tls = model::ClientTlsSettings{.mode = Mode::kMutual,
                                       .client_certificate = "/etc/certs/cert.pem",
                                       .private_key = "/etc/certs/key.pem"}});
  rule.traffic_policy->load_balancer.emplace().locality_lb_setting.emplace().failover_priority = {
      "topology.kubernetes.io/region"};
  // ISTIO_MUTUAL is accepted, with a warning that traffic stays plaintext.
  rule.subsets.push_back(
      {.name = "v1",
       .labels = {{"version", "v1"}},
       .traffic_policy = model::TrafficPolicy{.tls = model::ClientTlsSettings{
                                                  .mode = Mode::kIstioMutual}}});
  auto errors = CheckDestinationRules(state);
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].message.rfind("spec.trafficPolicy.tls.credentialName: Kubernetes secrets need SDS",
                                0) == 0);
  CHECK(errors[1].message.rfind(
            "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority: ", 0) == 0);
  CHECK(errors[2].message.rfind("spec.subsets[0].trafficPolicy.tls.mode: ISTIO_MUTUAL needs", 0) ==
        0);
}

}  // namespace
}  // namespace meshpilot::translator
