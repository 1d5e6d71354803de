#include "translator/locality.h"

#include <map>
#include <set>
#include <vector>

#include "absl/strings/str_split.h"

namespace meshpilot::translator {
namespace {

using envoy::config::endpoint::v3::ClusterLoadAssignment;

model::Locality FromProto(const envoy::config::core::v3::Locality& locality) {
  return {locality.region(), locality.zone(), locality.sub_zone()};
}

void ApplyDistribute(const model::LocalityLbSetting::Distribute& distribute,
                     ClusterLoadAssignment& assignment) {
  std::vector<uint64_t> weights(assignment.endpoints_size(), 0);
  for (const auto& [pattern, weight] : distribute.to) {
    std::vector<int> matching;
    for (int i = 0; i < assignment.endpoints_size(); ++i) {
      if (LocalityMatches(FromProto(assignment.endpoints(i).locality()), pattern)) {
        matching.push_back(i);
      }
    }
    // Scaled so that an even share of a small weight stays above zero.
    for (int i : matching) weights[i] += uint64_t{weight} * 1000 / matching.size();
  }
  ClusterLoadAssignment kept;
  for (int i = 0; i < assignment.endpoints_size(); ++i) {
    if (weights[i] == 0) continue;
    auto* group = kept.add_endpoints();
    *group = assignment.endpoints(i);
    group->mutable_load_balancing_weight()->set_value(static_cast<uint32_t>(weights[i]));
  }
  assignment.mutable_endpoints()->Swap(kept.mutable_endpoints());
}

void ApplyFailover(const model::LocalityLbSetting* setting, const model::Locality& proxy,
                   ClusterLoadAssignment& assignment) {
  std::string failover_region;
  if (setting != nullptr) {
    for (const auto& failover : setting->failover) {
      if (failover.from == proxy.region) {
        failover_region = failover.to;
        break;
      }
    }
  }
  std::vector<uint32_t> priorities;
  std::set<uint32_t> used;
  for (const auto& group : assignment.endpoints()) {
    const model::Locality locality = FromProto(group.locality());
    uint32_t priority = 4;
    if (locality.region == proxy.region) {
      priority = locality.zone != proxy.zone           ? 2
                 : locality.subzone != proxy.subzone ? 1
                                                     : 0;
    } else if (!failover_region.empty() && locality.region == failover_region) {
      priority = 3;
    }
    priorities.push_back(priority);
    used.insert(priority);
  }
  // Envoy wants priorities without gaps.
  std::map<uint32_t, uint32_t> compact;
  for (uint32_t priority : used) compact.emplace(priority, static_cast<uint32_t>(compact.size()));
  for (int i = 0; i < assignment.endpoints_size(); ++i) {
    assignment.mutable_endpoints(i)->set_priority(compact[priorities[i]]);
  }
}

}  // namespace

bool LocalityMatches(const model::Locality& locality, std::string_view pattern) {
  std::vector<absl::string_view> parts =
      absl::StrSplit(absl::string_view(pattern.data(), pattern.size()), '/');
  const std::string* fields[] = {&locality.region, &locality.zone, &locality.subzone};
  for (size_t i = 0; i < parts.size() && i < 3; ++i) {
    if (parts[i] == "*") continue;
    if (parts[i] != absl::string_view(*fields[i])) return false;
  }
  return true;
}

void ApplyLocalityLb(const ClusterTrafficPolicy& policy, const model::Locality& proxy_locality,
                     ClusterLoadAssignment& assignment) {
  if (proxy_locality == model::Locality{}) return;
  const model::LocalityLbSetting* setting =
      policy.load_balancer && policy.load_balancer->locality_lb_setting
          ? &*policy.load_balancer->locality_lb_setting
          : nullptr;
  if (setting != nullptr && !setting->enabled.value_or(true)) return;
  if (setting != nullptr) {
    for (const auto& distribute : setting->distribute) {
      if (LocalityMatches(proxy_locality, distribute.from)) {
        ApplyDistribute(distribute, assignment);
        return;
      }
    }
  }
  if (policy.outlier_detection) ApplyFailover(setting, proxy_locality, assignment);
}

}  // namespace meshpilot::translator
