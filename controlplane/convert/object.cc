#include "controlplane/convert/object.h"

#include <exception>
#include <string>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "controlplane/convert/authorization_policy.h"
#include "controlplane/convert/destination_rule.h"
#include "controlplane/convert/virtual_service.h"

namespace meshpilot::convert {
namespace {

using Reader = KubeObject (*)(MapReader&, model::ObjectMeta);

template <typename Object, Object (*Read)(MapReader&, model::ObjectMeta)>
KubeObject ReadAs(MapReader& object, model::ObjectMeta meta) {
  return Read(object, std::move(meta));
}

KubeObject ReadNamespace(MapReader&, model::ObjectMeta meta) {
  return model::Namespace{std::move(meta)};
}

constexpr Reader kReadVirtualService = ReadAs<model::VirtualService, ReadVirtualService>;
constexpr Reader kReadDestinationRule = ReadAs<model::DestinationRule, ReadDestinationRule>;
constexpr Reader kReadAuthorizationPolicy =
    ReadAs<model::AuthorizationPolicy, ReadAuthorizationPolicy>;

struct Kind {
  absl::string_view api_version;
  absl::string_view kind;
  bool namespaced;
  Reader read;
};

constexpr Kind kKinds[] = {
    {"v1", "Service", true, ReadAs<model::Service, ReadService>},
    {"v1", "Endpoints", true, ReadAs<ServiceEndpoints, ReadEndpoints>},
    {"discovery.k8s.io/v1", "EndpointSlice", true, ReadAs<ServiceEndpoints, ReadEndpointSlice>},
    {"v1", "Pod", true, ReadAs<model::Pod, ReadPod>},
    {"v1", "Namespace", false, ReadNamespace},
    {"networking.istio.io/v1", "VirtualService", true, kReadVirtualService},
    {"networking.istio.io/v1beta1", "VirtualService", true, kReadVirtualService},
    {"networking.istio.io/v1alpha3", "VirtualService", true, kReadVirtualService},
    {"networking.istio.io/v1", "DestinationRule", true, kReadDestinationRule},
    {"networking.istio.io/v1beta1", "DestinationRule", true, kReadDestinationRule},
    {"networking.istio.io/v1alpha3", "DestinationRule", true, kReadDestinationRule},
    {"security.istio.io/v1", "AuthorizationPolicy", true, kReadAuthorizationPolicy},
    {"security.istio.io/v1beta1", "AuthorizationPolicy", true, kReadAuthorizationPolicy},
};

const Kind* FindKind(absl::string_view api_version, absl::string_view kind) {
  for (const Kind& candidate : kKinds) {
    if (candidate.api_version == api_version && candidate.kind == kind) return &candidate;
  }
  return nullptr;
}

// The scalar at `key` of a mapping, "" when there is none; never throws.
std::string ScalarAt(const YAML::Node& node, absl::string_view key) {
  if (!node.IsMap()) return "";
  YAML::Node value = node[std::string(key)];  // a const node: no insertion
  return value.IsDefined() && value.IsScalar() ? value.Scalar() : "";
}

// Kind and name of a document, as far as they can be read, to tell the user which document
// an error is about even when it did not parse.
model::ConfigError DescribeRejected(const YAML::Node& document, std::string origin,
                                    std::string message) {
  model::ConfigError error;
  error.origin = std::move(origin);
  error.kind = ScalarAt(document, "kind");
  if (document.IsMap()) {
    YAML::Node metadata = document["metadata"];
    if (metadata.IsDefined()) {
      error.name = ScalarAt(metadata, "name");
      error.namespace_ = ScalarAt(metadata, "namespace");
    }
  }
  if (error.namespace_.empty() && !error.kind.empty() && error.kind != "Namespace") {
    error.namespace_ = "default";
  }
  error.message = std::move(message);
  return error;
}

}  // namespace

absl::string_view KindOf(const KubeObject& object) {
  struct Visitor {
    absl::string_view operator()(const model::Service&) { return "Service"; }
    absl::string_view operator()(const ServiceEndpoints& endpoints) {
      return endpoints.kind == ServiceEndpoints::Kind::kEndpoints ? "Endpoints" : "EndpointSlice";
    }
    absl::string_view operator()(const model::Pod&) { return "Pod"; }
    absl::string_view operator()(const model::Namespace&) { return "Namespace"; }
    absl::string_view operator()(const model::VirtualService&) { return "VirtualService"; }
    absl::string_view operator()(const model::DestinationRule&) { return "DestinationRule"; }
    absl::string_view operator()(const model::AuthorizationPolicy&) {
      return "AuthorizationPolicy";
    }
  };
  return std::visit(Visitor{}, object);
}

const model::ObjectMeta& MetaOf(const KubeObject& object) {
  return std::visit([](const auto& typed) -> const model::ObjectMeta& { return typed.meta; },
                    object);
}

absl::StatusOr<KubeObject> ParseObject(const YAML::Node& document) {
  try {
    if (!document.IsMap()) {
      return absl::InvalidArgumentError("a document must hold one object (a YAML mapping)");
    }
    ValidationErrors errors;
    // The envelope is read leniently (status, managedFields, ... are of no interest); each
    // kind reads its spec as strictly as suits it.
    MapReader object(document, FieldPath(), &errors, /*strict=*/false);
    std::string api_version = object.RequiredString("apiVersion");
    std::string kind_name = object.RequiredString("kind");
    if (!errors.empty()) return errors.ToStatus();
    const Kind* kind = FindKind(api_version, kind_name);
    if (kind == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "kind: unsupported kind \"", kind_name, "\" of apiVersion \"", api_version, "\""));
    }
    model::ObjectMeta meta = ReadObjectMeta(object, kind->namespaced);
    KubeObject parsed = kind->read(object, std::move(meta));
    if (!errors.empty()) return errors.ToStatus();
    return parsed;
  } catch (const std::exception& e) {
    // The readers avoid throwing calls; this is the boundary that guarantees it.
    return absl::InvalidArgumentError(absl::StrCat("malformed document: ", e.what()));
  }
}

ServedVersion ReadServedVersion(const YAML::Node& document, std::string origin,
                                absl::Span<const SourcedObject> served_before) {
  ServedVersion served;
  absl::StatusOr<KubeObject> object = ParseObject(document);
  if (object.ok()) {
    served.accepted = SourcedObject{std::move(origin), *std::move(object)};
    return served;
  }
  served.problems = std::string(object.status().message());
  model::ConfigError error = DescribeRejected(document, std::move(origin), served.problems);
  for (const SourcedObject& before : served_before) {
    const model::ObjectMeta& meta = MetaOf(before.object);
    if (KindOf(before.object) != error.kind || meta.name != error.name ||
        meta.namespace_ != error.namespace_) {
      continue;
    }
    served.accepted = before;
    served.serving_note = "still serving its last valid version";
    if (!meta.resource_version.empty()) {
      absl::StrAppend(&served.serving_note, " (resourceVersion ", meta.resource_version, ")");
    }
    absl::StrAppend(&error.message, "; ", served.serving_note);
    break;
  }
  served.error = std::move(error);
  return served;
}

absl::StatusOr<ParsedStream> ParseYamlStream(absl::string_view yaml, absl::string_view origin,
                                             absl::Span<const SourcedObject> served_before) {
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(std::string(yaml));
  } catch (const YAML::Exception& e) {
    // yaml-cpp counts from 0; editors count from 1.
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML at line ", e.mark.line + 1,
                                                   ", column ", e.mark.column + 1, ": ", e.msg));
  }
  std::vector<ServedVersion> versions;
  for (size_t i = 0; i < documents.size(); ++i) {
    const YAML::Node& document = documents[i];
    if (!document.IsDefined() || document.IsNull()) continue;  // "---" with nothing after it
    versions.push_back(
        ReadServedVersion(document, absl::StrCat(origin, "[", i, "]"), served_before));
  }
  auto valid_elsewhere = [&](const ServedVersion& kept) {
    return absl::c_any_of(versions, [&](const ServedVersion& other) {
      return !other.error && other.accepted &&
             KindOf(other.accepted->object) == KindOf(kept.accepted->object) &&
             MetaOf(other.accepted->object).Key() == MetaOf(kept.accepted->object).Key();
    });
  };
  ParsedStream stream;
  for (ServedVersion& version : versions) {
    if (version.error && version.accepted && valid_elsewhere(version)) {
      // The old version kept for a rejected document yields to a valid one moved elsewhere
      // in the same file.
      version.accepted.reset();
      version.error->message = version.problems;
    }
    if (version.accepted) stream.objects.push_back(*std::move(version.accepted));
    if (version.error) stream.errors.push_back(*std::move(version.error));
  }
  return stream;
}

}  // namespace meshpilot::convert
