#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "controlplane/model/authorization_policy.h"
#include "controlplane/model/destination_rule.h"
#include "controlplane/model/endpoint.h"
#include "controlplane/model/service.h"
#include "controlplane/model/virtual_service.h"
#include "controlplane/model/workload.h"

namespace meshpilot::model {

// The kind of problem, in the vocabulary of Istio's analyzers (istioctl analyze, the
// validationMessages of an object's status): {"ReferencedResourceNotFound", "IST0101"}.
// meshpilot's own kinds, which Istio has no analyzer for, have a name and no code.
struct MessageType {
  std::string name;
  std::string code;
};

// An object a source could not accept, or (from the translator) one it accepted but cannot
// fully honour, with where it came from and why.
struct ConfigError {
  std::string origin;  // "dir/file.yaml[2]" for the file source, "kube" for the API
  std::string kind;    // "VirtualService", ... ; empty when the document did not parse
  std::string namespace_;
  std::string name;
  std::string message;  // field path first: "spec.http[0].route[1].weight: must be >= 0"
  MessageType type;     // for translator warnings; rejections are schema validation errors
};

// Everything the translator reads, as one immutable snapshot. Sources build a new one for
// every change and publish it as shared_ptr<const MeshState>; readers never lock. All maps
// are keyed by "namespace/name" and ordered, so translation output is deterministic.
struct MeshState {
  uint64_t version = 0;  // increases with every publish from a source

  std::map<std::string, Service> services;
  // Endpoints of each service, keyed like `services`, ordered by address then port.
  std::map<std::string, std::vector<Endpoint>> endpoints;
  std::map<std::string, VirtualService> virtual_services;
  std::map<std::string, DestinationRule> destination_rules;
  std::map<std::string, AuthorizationPolicy> authorization_policies;
  std::map<std::string, Pod> pods;
  std::map<std::string, Namespace> namespaces;  // keyed by name alone

  std::vector<ConfigError> errors;

  const std::vector<Endpoint>& EndpointsOf(const Service& service) const;
};

using MeshStatePtr = std::shared_ptr<const MeshState>;

}  // namespace meshpilot::model
