#include "translator/destination_rule_index.h"

#include <memory>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "translator/message_types.h"
#include "translator/names.h"

namespace meshpilot::translator {
namespace {

bool Selects(const std::map<std::string, std::string>& selector,
             const std::map<std::string, std::string>& labels) {
  for (const auto& [key, value] : selector) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

bool AppliesTo(const model::DestinationRule& rule, const ProxyInfo& proxy) {
  if (!IsExportedTo(rule.export_to, rule.meta.namespace_, proxy.namespace_)) return false;
  if (rule.workload_selector) {
    return rule.meta.namespace_ == proxy.namespace_ &&
           Selects(*rule.workload_selector, proxy.labels);
  }
  return true;
}

// Several rules in one group merge as Istio merges them, in namespace/name order (Istio: creation
// order, which the model does not carry): every subset whose name is new is appended; the
// first top-level trafficPolicy and exportTo win. The first rule's name stands for the merge.
model::DestinationRule Merge(const std::vector<const model::DestinationRule*>& rules) {
  model::DestinationRule merged = *rules.front();
  for (size_t i = 1; i < rules.size(); ++i) {
    const model::DestinationRule& rule = *rules[i];
    for (const model::Subset& subset : rule.subsets) {
      if (FindSubset(&merged, subset.name) == nullptr) merged.subsets.push_back(subset);
    }
    if (!merged.traffic_policy) merged.traffic_policy = rule.traffic_policy;
    if (merged.export_to.empty()) merged.export_to = rule.export_to;
  }
  return merged;
}

model::ConfigError ErrorFor(const model::DestinationRule& rule, std::string message,
                            const model::MessageType& type = kNotSupported) {
  return {.origin = "translator",
          .kind = "DestinationRule",
          .namespace_ = rule.meta.namespace_,
          .name = rule.meta.name,
          .message = std::move(message),
          .type = type};
}

void CheckPolicy(const model::DestinationRule& rule, const model::TrafficPolicy& policy,
                 const std::string& path, std::vector<model::ConfigError>& errors) {
  using Mode = model::ClientTlsSettings::Mode;
  auto check_tls = [&](const std::optional<model::ClientTlsSettings>& tls,
                       const std::string& field) {
    if (tls && tls->mode == Mode::kIstioMutual) {
      errors.push_back(ErrorFor(
          rule, absl::StrCat(field, ".mode: ISTIO_MUTUAL needs the mesh's mTLS, which meshpilot "
                                    "does not serve yet; plaintext is used")));
    } else if (tls && tls->mode != Mode::kDisable && !tls->credential_name.empty()) {
      errors.push_back(ErrorFor(
          rule, absl::StrCat(field, ".credentialName: Kubernetes secrets need SDS, which "
                                    "meshpilot does not serve; plaintext is used (give "
                                    "clientCertificate, privateKey and caCertificates files)")));
    }
  };
  auto check_lb = [&](const std::optional<model::LoadBalancerSettings>& lb,
                      const std::optional<model::OutlierDetection>& outlier_detection,
                      const std::string& field) {
    if (!lb) return;
    if (const auto& locality = lb->locality_lb_setting) {
      if (!locality->failover_priority.empty()) {
        errors.push_back(ErrorFor(
            rule, absl::StrCat(field, ".localityLbSetting.failoverPriority: not supported yet; "
                                      "ignored (failover by locality still applies)")));
      }
      if (!locality->failover.empty() && !outlier_detection) {
        errors.push_back(ErrorFor(
            rule, absl::StrCat(field, ".localityLbSetting.failover: needs outlierDetection "
                                      "(as in Istio); without it, no failover happens")));
      }
    }
    const bool round_robin_or_least_request =
        !lb->consistent_hash &&
        (!lb->simple || *lb->simple == model::LoadBalancerSettings::Simple::kRoundRobin ||
         *lb->simple == model::LoadBalancerSettings::Simple::kLeastRequest ||
         *lb->simple == model::LoadBalancerSettings::Simple::kLeastConn);
    if ((lb->warmup || lb->warmup_duration) && !round_robin_or_least_request) {
      errors.push_back(ErrorFor(
          rule, absl::StrCat(field, ".warmup: applies to ROUND_ROBIN and LEAST_REQUEST only; "
                                    "ignored with this load balancer")));
    }
  };
  check_tls(policy.tls, path + ".tls");
  check_lb(policy.load_balancer, policy.outlier_detection, path + ".loadBalancer");
  for (size_t i = 0; i < policy.port_level_settings.size(); ++i) {
    std::string field = absl::StrCat(path, ".portLevelSettings[", i, "]");
    check_tls(policy.port_level_settings[i].tls, field + ".tls");
    check_lb(policy.port_level_settings[i].load_balancer,
             policy.port_level_settings[i].outlier_detection, field + ".loadBalancer");
  }
  if (policy.tunnel) {
    errors.push_back(ErrorFor(rule, path + ".tunnel: not supported yet; ignored"));
  }
  if (policy.proxy_protocol) {
    errors.push_back(ErrorFor(rule, path + ".proxyProtocol: not supported yet; ignored"));
  }
}

}  // namespace

DestinationRuleIndex::DestinationRuleIndex(const model::MeshState& state,
                                           const ProxyInfo& proxy) {
  // The rules that may apply to this proxy, grouped as Istio merges them.
  std::map<RuleGroup, std::vector<const model::DestinationRule*>> groups;
  for (const auto& [rule_key, rule] : state.destination_rules) {
    if (AppliesTo(rule, proxy)) groups[GroupOf(rule)].push_back(&rule);
  }
  for (const auto& [key, service] : state.services) {
    const std::string hostname = service.Hostname();
    const RuleGroup* best = nullptr;
    std::tuple<int, size_t, bool> best_rank{0, 0, false};
    for (const auto& [group, rules] : groups) {
      if (!HostMatches(hostname, group.host)) continue;
      // Istio's lookup path; rules elsewhere never apply, even when exported.
      int tier = group.namespace_ == proxy.namespace_           ? 3
                 : group.namespace_ == service.meta.namespace_ ? 2
                 : group.namespace_ == kRootNamespace          ? 1
                                                               : 0;
      if (tier == 0) continue;
      // A rule selecting this workload beats one for every workload of its namespace.
      std::tuple<int, size_t, bool> rank{tier, HostSpecificity(group.host), group.selector};
      if (rank > best_rank) {
        best = &group;
        best_rank = rank;
      }
    }
    if (best == nullptr) continue;
    const std::vector<const model::DestinationRule*>& rules = groups[*best];
    if (rules.size() == 1) {
      by_service_[key] = rules.front();
      continue;
    }
    auto [it, inserted] = merged_by_group_.try_emplace(*best, nullptr);
    if (inserted) {
      merged_.push_back(std::make_unique<model::DestinationRule>(Merge(rules)));
      it->second = merged_.back().get();
    }
    by_service_[key] = it->second;
  }
}

RuleGroup GroupOf(const model::DestinationRule& rule) {
  return {rule.meta.namespace_, ResolveHost(rule.host, rule.meta.namespace_),
          rule.workload_selector.has_value(),
          rule.workload_selector.value_or(std::map<std::string, std::string>{})};
}

const model::DestinationRule* DestinationRuleIndex::ForService(
    const model::Service& service) const {
  auto it = by_service_.find(service.meta.Key());
  return it == by_service_.end() ? nullptr : it->second;
}

const model::Subset* FindSubset(const model::DestinationRule* rule, const std::string& name) {
  if (rule == nullptr) return nullptr;
  for (const model::Subset& subset : rule->subsets) {
    if (subset.name == name) return &subset;
  }
  return nullptr;
}

std::vector<model::ConfigError> CheckDestinationRules(const model::MeshState& state) {
  std::vector<model::ConfigError> errors;
  std::map<RuleGroup, std::vector<const model::DestinationRule*>> groups;
  for (const auto& [key, rule] : state.destination_rules) groups[GroupOf(rule)].push_back(&rule);
  for (const auto& [group, rules] : groups) {
    if (rules.size() < 2) continue;
    std::string names;
    for (const model::DestinationRule* rule : rules) {
      absl::StrAppend(&names, names.empty() ? "" : ", ", rule->meta.namespace_, "/",
                      rule->meta.name);
    }
    std::map<std::string, const model::DestinationRule*> subset_owner;
    const model::DestinationRule* policy_owner = nullptr;
    for (const model::DestinationRule* rule : rules) {
      std::string message = absl::StrCat("spec.host: host ", group.host,
                                         " has several DestinationRules (", names,
                                         "); they are merged in that order");
      for (size_t i = 0; i < rule->subsets.size(); ++i) {
        auto [owner, inserted] = subset_owner.try_emplace(rule->subsets[i].name, rule);
        if (!inserted) {
          absl::StrAppend(&message, "; spec.subsets[", i, "] \"", rule->subsets[i].name,
                          "\" is ignored: ", owner->second->meta.name, " defines it first");
        }
      }
      if (rule->traffic_policy) {
        if (policy_owner != nullptr) {
          absl::StrAppend(&message, "; spec.trafficPolicy is ignored: ",
                          policy_owner->meta.name, " has the first one");
        } else {
          policy_owner = rule;
        }
      }
      errors.push_back(ErrorFor(*rule, std::move(message), kMergedDestinationRules));
    }
  }
  for (const auto& [key, rule] : state.destination_rules) {
    if (rule.traffic_policy) CheckPolicy(rule, *rule.traffic_policy, "spec.trafficPolicy", errors);
    for (size_t i = 0; i < rule.subsets.size(); ++i) {
      if (rule.subsets[i].traffic_policy) {
        CheckPolicy(rule, *rule.subsets[i].traffic_policy,
                    absl::StrCat("spec.subsets[", i, "].trafficPolicy"), errors);
      }
    }
  }
  return errors;
}

}  // namespace meshpilot::translator
