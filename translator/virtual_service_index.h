#pragma once

#include <map>
#include <string>
#include <vector>

#include "controlplane/model/mesh_state.h"
#include "translator/proxy.h"

namespace meshpilot::translator {

// Which VirtualServices shape the routes to which Service, as one proxy sees them (Istio's
// rules): a VirtualService counts when it is bound to the mesh (no `gateways`, or "mesh"
// among them) and exported to the proxy's namespace; its hosts are resolved in its own
// namespace; a Service takes the VirtualServices whose matching host is the most specific
// (an exact host beats `*.ns.svc.cluster.local`, which beats `*`).
//
// Several VirtualServices for one host are merged: their http rules are appended in
// namespace/name order. Istio appends in creation order, which the model does not carry;
// namespace/name is the stable order every replica agrees on. CheckVirtualServices reports
// such merges.
class VirtualServiceIndex {
 public:
  VirtualServiceIndex(const model::MeshState& state, const ProxyInfo& proxy);

  // The VirtualServices for `service`, in merge order; empty: the service keeps its default route.
  const std::vector<const model::VirtualService*>& ForService(const model::Service& service) const;

  // Every VirtualService the proxy sees, in namespace/name order.
  const std::vector<const model::VirtualService*>& visible() const { return visible_; }

 private:
  std::vector<const model::VirtualService*> visible_;
  std::map<std::string, std::vector<const model::VirtualService*>> by_service_;  // by ns/name
};

// Whether a VirtualService is bound to sidecars and proxyless clients ("mesh").
bool BoundToMesh(const model::VirtualService& vs);

// What translation ignores or merges in VirtualServices, one entry per finding, for the
// status and debug pages: tls rules for hosts without an HTTPS/TLS port (never used),
// gateway-only VirtualServices (meshpilot serves the mesh only), hosts defined by several
// VirtualServices (merged; later rules unreachable after an earlier catch-all are called out),
// destinations that name no Service.
std::vector<model::ConfigError> CheckVirtualServices(const model::MeshState& state);

}  // namespace meshpilot::translator
