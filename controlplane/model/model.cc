#include "absl/strings/str_cat.h"
#include "controlplane/model/mesh_state.h"

namespace meshpilot::model {

std::string_view ProtocolName(Protocol protocol) {
  switch (protocol) {
    case Protocol::kTcp: return "TCP";
    case Protocol::kHttp: return "HTTP";
    case Protocol::kHttp2: return "HTTP2";
    case Protocol::kGrpc: return "GRPC";
    case Protocol::kHttps: return "HTTPS";
    case Protocol::kTls: return "TLS";
    case Protocol::kUdp: return "UDP";
    case Protocol::kUnknown: return "UNKNOWN";
  }
  return "UNKNOWN";
}

bool IsHttpLike(Protocol protocol) {
  return protocol == Protocol::kHttp || protocol == Protocol::kHttp2 ||
         protocol == Protocol::kGrpc;
}

bool IsTls(Protocol protocol) { return protocol == Protocol::kHttps || protocol == Protocol::kTls; }

bool IsTcpLike(Protocol protocol) { return protocol == Protocol::kTcp || IsTls(protocol); }

std::string Service::Hostname(const std::string& domain_suffix) const {
  return absl::StrCat(meta.name, ".", meta.namespace_, ".svc.", domain_suffix);
}

const std::vector<Endpoint>& MeshState::EndpointsOf(const Service& service) const {
  static const std::vector<Endpoint> kNone;
  auto it = endpoints.find(service.meta.Key());
  return it == endpoints.end() ? kNone : it->second;
}

}  // namespace meshpilot::model
