#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "controlplane/model/object_meta.h"

namespace meshpilot::model {

// Application protocol of a service port, as Istio derives it from `appProtocol`, the port
// name prefix (`http-`, `grpc-`, ...) or the protocol field.
enum class Protocol { kTcp, kHttp, kHttp2, kGrpc, kHttps, kTls, kUdp, kUnknown };

std::string_view ProtocolName(Protocol protocol);
bool IsHttpLike(Protocol protocol);
// HTTPS and TLS: carried as opaque TCP, routed by the ClientHello's SNI (VirtualService `tls`).
bool IsTls(Protocol protocol);
// What sidecars carry as a byte stream: TCP and the TLS protocols.
bool IsTcpLike(Protocol protocol);

struct ServicePort {
  std::string name;
  uint32_t port = 0;
  Protocol protocol = Protocol::kTcp;
  // targetPort is either a number or the name of a container port.
  uint32_t target_port = 0;
  std::string target_port_name;
};

// A Kubernetes v1/Service.
struct Service {
  ObjectMeta meta;
  std::string cluster_ip;  // empty or "None" for headless services
  std::map<std::string, std::string> selector;
  std::vector<ServicePort> ports;

  // name.namespace.svc.<domain suffix>
  std::string Hostname(const std::string& domain_suffix = "cluster.local") const;
};

}  // namespace meshpilot::model
