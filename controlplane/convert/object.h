#pragma once

#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "controlplane/convert/kube_objects.h"
#include "controlplane/model/mesh_state.h"
#include "yaml-cpp/yaml.h"

namespace meshpilot::convert {

// One accepted Kubernetes object of a kind meshpilot reads.
using KubeObject = std::variant<model::Service, ServiceEndpoints, model::Pod, model::Namespace,
                                model::VirtualService, model::DestinationRule,
                                model::AuthorizationPolicy>;

// "Service", "EndpointSlice", "VirtualService", ...
absl::string_view KindOf(const KubeObject& object);
const model::ObjectMeta& MetaOf(const KubeObject& object);

// Parses and validates one YAML document holding one object: v1 Service, Endpoints, Pod and
// Namespace; discovery.k8s.io/v1 EndpointSlice; networking.istio.io v1, v1beta1 and v1alpha3
// VirtualService and DestinationRule; security.istio.io v1 and v1beta1 AuthorizationPolicy.
// On failure, InvalidArgument lists every problem found, each led by its field path
// ("spec.http[0].route[1].weight: must be >= 0"), separated by "; ". Never throws.
absl::StatusOr<KubeObject> ParseObject(const YAML::Node& document);

// An accepted object and where it came from ("dir/a.yaml[2]").
struct SourcedObject {
  std::string origin;
  KubeObject object;
};

// What one YAML stream (one file) holds: the objects of its valid documents and one error
// per invalid document. One bad document never drops the others.
struct ParsedStream {
  std::vector<SourcedObject> objects;
  std::vector<model::ConfigError> errors;
};

// Parses every document of `yaml`; `origin` names the stream in errors and objects, which get
// "origin[index]". Fails only when the text is not YAML at all, with the line and column of
// the syntax error: then nothing of the stream can be trusted.
absl::StatusOr<ParsedStream> ParseYamlStream(absl::string_view yaml, absl::string_view origin);

}  // namespace meshpilot::convert
