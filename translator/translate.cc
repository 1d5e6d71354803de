#include "translator/translate.h"

namespace meshpilot::translator {

ProxyResources Translate(const model::MeshState& state, const ProxyInfo& proxy) {
  return ProxyResources{
      .clusters = BuildClusters(state, proxy),
      .endpoints = BuildLoadAssignments(state, proxy),
      .listeners = BuildListeners(state, proxy),
      .routes = BuildRouteConfigurations(state, proxy),
  };
}

}  // namespace meshpilot::translator
