#include "translator/translate.h"

#include "translator/authorization.h"
#include "translator/destination_rule_index.h"
#include "translator/virtual_service_index.h"

namespace meshpilot::translator {

ProxyResources Translate(const model::MeshState& state, const ProxyInfo& proxy) {
  return ProxyResources{
      .clusters = BuildClusters(state, proxy),
      .endpoints = BuildLoadAssignments(state, proxy),
      .listeners = BuildListeners(state, proxy),
      .routes = BuildRouteConfigurations(state, proxy),
  };
}

std::vector<model::ConfigError> CheckConfig(const model::MeshState& state) {
  std::vector<model::ConfigError> warnings = CheckVirtualServices(state);
  std::vector<model::ConfigError> more = CheckDestinationRules(state);
  warnings.insert(warnings.end(), more.begin(), more.end());
  more = CheckAuthorizationPolicies(state);
  warnings.insert(warnings.end(), more.begin(), more.end());
  return warnings;
}

}  // namespace meshpilot::translator
