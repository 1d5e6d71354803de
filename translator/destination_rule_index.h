#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "controlplane/model/mesh_state.h"
#include "translator/proxy.h"

namespace meshpilot::translator {

// Which DestinationRule applies to each Service for one proxy, by Istio's lookup: a rule must
// be exported to the proxy's namespace (and, with a workloadSelector, live in the proxy's
// namespace and select its labels); among those whose host (resolved in the rule's
// namespace) covers the service, the proxy's namespace wins, then the service's, then the
// root namespace (istio-system); rules in any other namespace do not apply. Then the most
// specific host, then a rule whose workloadSelector selects the proxy over one without.
//
// Rules of one namespace for the same resolved host (and the same workloadSelector) are merged
// as Istio merges them: subsets appended when their name is new, the first trafficPolicy and
// exportTo kept (namespace/name order). CheckDestinationRules reports merges and what they drop.
// DestinationRules that merge: same namespace, same resolved host, same workloadSelector.
struct RuleGroup {
  std::string namespace_;
  std::string host;
  bool selector = false;
  std::map<std::string, std::string> labels;
  auto operator<=>(const RuleGroup&) const = default;
};
RuleGroup GroupOf(const model::DestinationRule& rule);

class DestinationRuleIndex {
 public:
  DestinationRuleIndex(const model::MeshState& state, const ProxyInfo& proxy);
  DestinationRuleIndex(const DestinationRuleIndex&) = delete;
  DestinationRuleIndex& operator=(const DestinationRuleIndex&) = delete;

  // nullptr when no rule applies.
  const model::DestinationRule* ForService(const model::Service& service) const;

 private:
  std::map<std::string, const model::DestinationRule*> by_service_;  // by ns/name
  std::vector<std::unique_ptr<model::DestinationRule>> merged_;
  std::map<RuleGroup, const model::DestinationRule*> merged_by_group_;
};

// The subset of `rule` named `name`, or nullptr.
const model::Subset* FindSubset(const model::DestinationRule* rule, const std::string& name);

// What translation accepts without acting on it yet, per DestinationRule: client TLS modes
// other than DISABLE/ISTIO_MUTUAL, localityLbSetting, warmup on balancers without slow start,
// tunnel and proxyProtocol; and
// merges of several rules for one host, with the subsets and trafficPolicy they drop.
std::vector<model::ConfigError> CheckDestinationRules(const model::MeshState& state);

}  // namespace meshpilot::translator
