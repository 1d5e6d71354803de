#pragma once

#include <map>
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
// specific host, then namespace/name order.
class DestinationRuleIndex {
 public:
  DestinationRuleIndex(const model::MeshState& state, const ProxyInfo& proxy);

  // nullptr when no rule applies.
  const model::DestinationRule* ForService(const model::Service& service) const;

 private:
  std::map<std::string, const model::DestinationRule*> by_service_;  // by ns/name
};

// The subset of `rule` named `name`, or nullptr.
const model::Subset* FindSubset(const model::DestinationRule* rule, const std::string& name);

// What translation accepts without acting on it yet, per DestinationRule: client TLS modes
// other than DISABLE/ISTIO_MUTUAL, localityLbSetting, warmup, tunnel and proxyProtocol.
std::vector<model::ConfigError> CheckDestinationRules(const model::MeshState& state);

}  // namespace meshpilot::translator
