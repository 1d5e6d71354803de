// Istio's locality load balancing on a cluster's endpoints: failover priorities, distribute
// weights, and when neither applies.

#include <catch2/catch.hpp>

#include "translator/locality.h"

namespace meshpilot::translator {
namespace {

using envoy::config::endpoint::v3::ClusterLoadAssignment;

ClusterLoadAssignment Assignment(std::vector<model::Locality> localities) {
  ClusterLoadAssignment assignment;
  for (const model::Locality& locality : localities) {
    auto* group = assignment.add_endpoints();
    group->mutable_locality()->set_region(locality.region);
    group->mutable_locality()->set_zone(locality.zone);
    group->mutable_locality()->set_sub_zone(locality.subzone);
    group->mutable_load_balancing_weight()->set_value(1);
  }
  return assignment;
}

std::vector<uint32_t> Priorities(const ClusterLoadAssignment& assignment) {
  std::vector<uint32_t> out;
  for (const auto& group : assignment.endpoints()) out.push_back(group.priority());
  return out;
}

const model::Locality kHere{"us-east", "us-east-1a", "rack1"};
const std::vector<model::Locality> kEverywhere = {
    {"us-east", "us-east-1a", "rack1"}, {"us-east", "us-east-1a", "rack2"},
    {"us-east", "us-east-1b", ""},      {"us-west", "us-west-1a", ""},
    {"eu-west", "eu-west-1a", ""}};

ClusterTrafficPolicy WithOutlierDetection() {
  ClusterTrafficPolicy policy;
  policy.outlier_detection.emplace();
  return policy;
}

TEST_CASE("locality: failover priorities need outlier detection and a proxy locality",
          "[locality]") {
  ClusterLoadAssignment assignment = Assignment(kEverywhere);
  ApplyLocalityLb(WithOutlierDetection(), kHere, assignment);
  CHECK(Priorities(assignment) == std::vector<uint32_t>{0, 1, 2, 3, 3});

  // The failover target region comes before the other regions.
  ClusterTrafficPolicy policy = WithOutlierDetection();
  policy.load_balancer.emplace().locality_lb_setting.emplace().failover = {
      {.from = "us-east", .to = "eu-west"}};
  assignment = Assignment(kEverywhere);
  ApplyLocalityLb(policy, kHere, assignment);
  CHECK(Priorities(assignment) == std::vector<uint32_t>{0, 1, 2, 4, 3});

  // Priorities are compacted: none empty.
  assignment = Assignment({{"us-east", "us-east-1b", ""}, {"us-west", "x", ""}});
  ApplyLocalityLb(WithOutlierDetection(), kHere, assignment);
  CHECK(Priorities(assignment) == std::vector<uint32_t>{0, 1});

  // No outlier detection, disabled, or a proxy without locality: untouched.
  for (auto [policy_used, proxy] :
       {std::pair{ClusterTrafficPolicy{}, kHere}, std::pair{WithOutlierDetection(), model::Locality{}}}) {
    assignment = Assignment(kEverywhere);
    ApplyLocalityLb(policy_used, proxy, assignment);
    CHECK(Priorities(assignment) == std::vector<uint32_t>{0, 0, 0, 0, 0});
  }
  policy.load_balancer->locality_lb_setting->enabled = false;
  assignment = Assignment(kEverywhere);
  ApplyLocalityLb(policy, kHere, assignment);
  CHECK(Priorities(assignment) == std::vector<uint32_t>{0, 0, 0, 0, 0});
}

TEST_CASE("locality: distribute sets weights from the first matching from", "[locality]") {
  ClusterTrafficPolicy policy;  // distribute needs no outlier detection
  auto& setting = policy.load_balancer.emplace().locality_lb_setting.emplace();
  setting.distribute = {
      {.from = "us-west/*", .to = {{"us-west/*", 100}}},
      {.from = "us-east/us-east-1a/*", .to = {{"us-east/us-east-1a/*", 80}, {"us-west/*", 20}}}};
  ClusterLoadAssignment assignment = Assignment(kEverywhere);
  ApplyLocalityLb(policy, kHere, assignment);
  // 80 shared by the two racks of us-east-1a, 20 to us-west; us-east-1b and eu-west left out.
  REQUIRE(assignment.endpoints_size() == 3);
  CHECK(assignment.endpoints(0).locality().sub_zone() == "rack1");
  CHECK(assignment.endpoints(0).load_balancing_weight().value() == 40000);
  CHECK(assignment.endpoints(1).load_balancing_weight().value() == 40000);
  CHECK(assignment.endpoints(2).locality().region() == "us-west");
  CHECK(assignment.endpoints(2).load_balancing_weight().value() == 20000);
  CHECK(Priorities(assignment) == std::vector<uint32_t>{0, 0, 0});
}

TEST_CASE("locality: patterns match by region, zone and subzone with wildcards", "[locality]") {
  CHECK(LocalityMatches(kHere, "us-east"));
  CHECK(LocalityMatches(kHere, "us-east/*"));
  CHECK(LocalityMatches(kHere, "us-east/us-east-1a/rack1"));
  CHECK(LocalityMatches(kHere, "*"));
  CHECK_FALSE(LocalityMatches(kHere, "us-east/us-east-1b"));
  CHECK_FALSE(LocalityMatches(kHere, "us-west/*"));
}

}  // namespace
}  // namespace meshpilot::translator
