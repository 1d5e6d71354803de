#include "translator/destination_rule_index.h"

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
    if (tls && tls->mode != Mode::kDisable && tls->mode != Mode::kIstioMutual) {
      errors.push_back(ErrorFor(
          rule, absl::StrCat(field, ".mode: SIMPLE and MUTUAL origination are not supported "
                                    "yet; plaintext is used")));
    }
  };
  auto check_lb = [&](const std::optional<model::LoadBalancerSettings>& lb,
                      const std::string& field) {
    if (!lb) return;
    if (lb->locality_lb_setting) {
      errors.push_back(ErrorFor(
          rule, absl::StrCat(field, ".localityLbSetting: not supported yet (needs the proxy's "
                                    "locality); ignored")));
    }
    if (lb->warmup || lb->warmup_duration) {
      errors.push_back(ErrorFor(rule, absl::StrCat(field, ".warmup: not supported yet; ignored")));
    }
  };
  check_tls(policy.tls, path + ".tls");
  check_lb(policy.load_balancer, path + ".loadBalancer");
  for (size_t i = 0; i < policy.port_level_settings.size(); ++i) {
    std::string field = absl::StrCat(path, ".portLevelSettings[", i, "]");
    check_tls(policy.port_level_settings[i].tls, field + ".tls");
    check_lb(policy.port_level_settings[i].load_balancer, field + ".loadBalancer");
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
  for (const auto& [key, service] : state.services) {
    const std::string hostname = service.Hostname();
    const model::DestinationRule* best = nullptr;
    std::tuple<int, size_t> best_rank{0, 0};
    for (const auto& [rule_key, rule] : state.destination_rules) {
      if (!AppliesTo(rule, proxy)) continue;
      std::string host = ResolveHost(rule.host, rule.meta.namespace_);
      if (!HostMatches(hostname, host)) continue;
      // Istio's lookup path; rules elsewhere never apply, even when exported.
      int tier = rule.meta.namespace_ == proxy.namespace_           ? 3
                 : rule.meta.namespace_ == service.meta.namespace_ ? 2
                 : rule.meta.namespace_ == kRootNamespace          ? 1
                                                                   : 0;
      if (tier == 0) continue;
      std::tuple<int, size_t> rank{tier, HostSpecificity(host)};
      if (rank > best_rank) {  // strict: the first in namespace/name order keeps ties
        best = &rule;
        best_rank = rank;
      }
    }
    if (best != nullptr) by_service_[key] = best;
  }
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
