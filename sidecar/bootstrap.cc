#include "sidecar/bootstrap.h"

#include <google/protobuf/util/json_util.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace meshpilot::sidecar {

absl::StatusOr<Bootstrap> LoadBootstrapFile(const std::string& path, Bootstrap bootstrap) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("bootstrap ", path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json doc = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("bootstrap ", path, ": not a JSON object"));
  }
  try {
    if (doc.contains("node")) {
      google::protobuf::util::JsonParseOptions options;
      auto status = google::protobuf::util::JsonStringToMessage(doc["node"].dump(),
                                                                &bootstrap.node, options);
      if (!status.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("bootstrap ", path, ": node: ", status.ToString()));
      }
    }
    if (doc.contains("xds_address")) bootstrap.xds_address = doc["xds_address"].get<std::string>();
    if (doc.contains("admin_address")) {
      bootstrap.admin_address = doc["admin_address"].get<std::string>();
    }
    if (doc.contains("admin_port")) bootstrap.admin_port = doc["admin_port"].get<uint16_t>();
    if (doc.contains("readiness_port")) {
      bootstrap.readiness_port = doc["readiness_port"].get<uint16_t>();
    }
    if (doc.contains("concurrency")) bootstrap.concurrency = doc["concurrency"].get<int>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("bootstrap ", path, ": ", e.what()));
  }
  return bootstrap;
}

absl::StatusOr<envoy::config::core::v3::Node> BuildNode(const NodeIdentity& identity) {
  envoy::config::core::v3::Node node;
  std::string ns = identity.namespace_;
  std::string pod = identity.pod_name;
  if (!identity.node_id.empty()) {
    node.set_id(identity.node_id);
    std::vector<std::string> parts = absl::StrSplit(identity.node_id, '~');
    if (parts.size() != 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "node id \"", identity.node_id, "\" is not of the form sidecar~IP~POD.NS~NS.svc.cluster.local"));
    }
    std::vector<std::string> pod_ns = absl::StrSplit(parts[2], absl::MaxSplits('.', 1));
    if (pod.empty()) pod = pod_ns[0];
    if (ns.empty() && pod_ns.size() == 2) ns = pod_ns[1];
  } else {
    if (ns.empty() || pod.empty()) {
      return absl::InvalidArgumentError("without --node-id, --pod-name and --namespace are needed");
    }
    node.set_id(absl::StrCat("sidecar~", identity.pod_ip, "~", pod, ".", ns, "~", ns,
                             ".svc.cluster.local"));
  }
  if (ns.empty()) return absl::InvalidArgumentError("no namespace in the node id nor --namespace");
  node.set_cluster(pod.empty() ? ns : absl::StrCat(pod, ".", ns));
  auto& fields = *node.mutable_metadata()->mutable_fields();
  fields["NAMESPACE"].set_string_value(ns);
  if (!pod.empty()) fields["NAME"].set_string_value(pod);
  if (!identity.service_account.empty()) {
    fields["SERVICE_ACCOUNT"].set_string_value(identity.service_account);
  }
  fields["INSTANCE_IPS"].set_string_value(identity.pod_ip);
  fields["CLUSTER_ID"].set_string_value(identity.cluster_id);
  // As Istio's injector: the workload is its owner's name (here a flag), else the app label,
  // else the pod; the canonical service and revision labels are added when the pod lacks them.
  auto label = [&identity](const char* key) -> std::string {
    auto it = identity.labels.find(key);
    return it == identity.labels.end() ? "" : it->second;
  };
  std::string workload = identity.workload_name;
  if (workload.empty()) workload = label("app");
  if (workload.empty()) workload = pod;
  if (!workload.empty()) fields["WORKLOAD_NAME"].set_string_value(workload);
  std::map<std::string, std::string> pod_labels = identity.labels;
  if (!pod_labels.contains("service.istio.io/canonical-name")) {
    std::string name = label("app.kubernetes.io/name");
    if (name.empty()) name = label("app");
    if (name.empty()) name = workload;
    if (!name.empty()) pod_labels["service.istio.io/canonical-name"] = name;
  }
  if (!pod_labels.contains("service.istio.io/canonical-revision")) {
    std::string revision = label("app.kubernetes.io/version");
    if (revision.empty()) revision = label("version");
    pod_labels["service.istio.io/canonical-revision"] = revision.empty() ? "latest" : revision;
  }
  auto& labels = *fields["LABELS"].mutable_struct_value()->mutable_fields();
  for (const auto& [key, value] : pod_labels) labels[key].set_string_value(value);
  if (!identity.locality.empty()) {
    std::vector<std::string> parts = absl::StrSplit(identity.locality, absl::MaxSplits('/', 2));
    parts.resize(3);
    node.mutable_locality()->set_region(parts[0]);
    node.mutable_locality()->set_zone(parts[1]);
    node.mutable_locality()->set_sub_zone(parts[2]);
  }
  node.set_user_agent_name("meshproxy");
  return node;
}

}  // namespace meshpilot::sidecar
