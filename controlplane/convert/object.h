#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
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

// What a source serves for one object after reading its newest version: that version if it is
// accepted; if it is rejected, the version accepted before it (as an admission webhook would
// have left the stored object in place), and the error that rejected the newest.
struct ServedVersion {
  std::optional<SourcedObject> accepted;
  std::optional<model::ConfigError> error;
  // Why the newest version is rejected: every problem with its field path, "; "-separated.
  std::string problems;
  // When the newest version is rejected but an earlier one serves: "still serving its last
  // valid version (resourceVersion 812)". `error->message` is the problems and this note.
  std::string serving_note;
};

// Reads the newest version of one object (`document`, from `origin`). `served_before` is what
// the source served from the same place before (the object's last accepted version, or the
// objects of the same file): on rejection the one with the rejected document's kind,
// namespace and name keeps serving. Never throws.
ServedVersion ReadServedVersion(const YAML::Node& document, std::string origin,
                                absl::Span<const SourcedObject> served_before);

// What one YAML stream (one file) holds: the objects of its valid documents (or of their last
// valid versions) and one error per invalid document. One bad document never drops the others.
struct ParsedStream {
  std::vector<SourcedObject> objects;
  std::vector<model::ConfigError> errors;
};

// Parses every document of `yaml` with ReadServedVersion; `origin` names the stream in errors
// and objects, which get "origin[index]"; `served_before` is what the stream held before.
// Fails only when the text is not YAML at all, with the line and column of the syntax error:
// then nothing of the stream can be trusted.
absl::StatusOr<ParsedStream> ParseYamlStream(absl::string_view yaml, absl::string_view origin,
                                             absl::Span<const SourcedObject> served_before = {});

}  // namespace meshpilot::convert
