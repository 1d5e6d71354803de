#pragma once

#include <map>
#include <string>

#include "controlplane/model/endpoint.h"

#include "absl/status/statusor.h"
#include "envoy/config/core/v3/base.pb.h"

namespace meshpilot::translator {

// Who is asking for config: parsed from the xDS Node of a stream, as istiod does.
struct ProxyInfo {
  enum class Type { kSidecar, kRouter };

  std::string id;  // the full node id: sidecar~IP~POD.NS~NS.svc.cluster.local
  Type type = Type::kSidecar;
  std::string ip;
  std::string pod_name;
  std::string namespace_;
  std::string dns_domain;  // NS.svc.cluster.local
  // Node metadata GENERATOR=grpc: a proxyless gRPC client, which gets api_listeners.
  bool proxyless_grpc = false;
  std::map<std::string, std::string> labels;
  // node.locality: where the proxy runs, for locality-aware load balancing.
  model::Locality locality;
  // node.user_agent_version: "C-core 29.0.0" for gRPC C++ 1.51 (C-core's own version).
  std::string user_agent_version;

  // gRPC C-core before 30 (gRPC 1.52) crashes in its ring_hash picker on the first pick
  // (grpc/grpc#31766), so such clients get ROUND_ROBIN where a rule asks for a hash.
  bool RingHashCrashes() const;

  // Proxies with equal keys receive identical resources, so their snapshot is built once:
  // generator, namespace, IP (inbound listeners) and labels.
  std::string TranslationKey() const;
  // "POD.NAMESPACE", the short form istiod's debug endpoints accept.
  std::string ShortId() const { return pod_name + "." + namespace_; }
};

// Parses `type~ip~pod.namespace~domain` and the metadata istio-agent and gRPC bootstraps send
// (NAMESPACE, LABELS, GENERATOR). The namespace in metadata wins over the one in the id.
absl::StatusOr<ProxyInfo> ParseProxyInfo(const envoy::config::core::v3::Node& node);

}  // namespace meshpilot::translator
