#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "controlplane/convert/yaml_reader.h"
#include "controlplane/model/service.h"
#include "controlplane/model/workload.h"

namespace meshpilot::convert {

// The endpoints of one Service as one v1/Endpoints object or one discovery.k8s.io/v1
// EndpointSlice states them: groups of addresses, each group served on its own ports.
// BuildMeshState flattens them into model::Endpoint.
struct ServiceEndpoints {
  enum class Kind { kEndpoints, kEndpointSlice };
  struct Address {
    std::string ip;
    bool ready = true;
    std::string pod_name;  // from a targetRef of kind Pod
    std::string pod_namespace;
    std::string node_name;
    std::string zone;  // EndpointSlice only
  };
  struct Port {
    std::string name;
    uint32_t port = 0;
  };
  struct Group {
    std::vector<Address> addresses;
    std::vector<Port> ports;
  };

  Kind kind = Kind::kEndpoints;
  model::ObjectMeta meta;
  std::string service_name;  // Endpoints: its own name; slices: label kubernetes.io/service-name
  std::vector<Group> groups;
};

// The protocol of a service port as Istio derives it: UDP ports are UDP; otherwise
// `appProtocol` when set, else the port name's prefix before '-' (or the whole name).
// Istio sniffs the protocol of ports it cannot name; meshpilot treats them as TCP.
model::Protocol DeriveProtocol(absl::string_view port_name, absl::string_view protocol,
                               const std::optional<std::string>& app_protocol);

// Readers of one kind each, given the whole object and its metadata. Problems go to the
// reader's ValidationErrors with their field paths.
model::ObjectMeta ReadObjectMeta(MapReader& object, bool namespaced);
model::Service ReadService(MapReader& object, model::ObjectMeta meta);
ServiceEndpoints ReadEndpoints(MapReader& object, model::ObjectMeta meta);
ServiceEndpoints ReadEndpointSlice(MapReader& object, model::ObjectMeta meta);
model::Pod ReadPod(MapReader& object, model::ObjectMeta meta);

}  // namespace meshpilot::convert
