#include "translator/proxy.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace meshpilot::translator {
namespace {

std::string StringField(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end() || !it->second.has_string_value()) return "";
  return it->second.string_value();
}

}  // namespace

std::string ProxyInfo::TranslationKey() const {
  // Labels matter too: VirtualService sourceLabels, DestinationRule workloadSelector and
  // AuthorizationPolicy selectors pick routes and policies per workload. So does the IP:
  // the inbound listeners and clusters are those of the endpoints with the proxy's address.
  std::string key =
      absl::StrCat(proxyless_grpc ? "grpc" : "sidecar", "/", namespace_, "/ip=", ip);
  if (RingHashCrashes()) key += "/no-ring-hash";
  if (locality != model::Locality{}) {
    absl::StrAppend(&key, "/locality=", locality.region, "/", locality.zone, "/", locality.subzone);
  }
  for (const auto& [name, value] : labels) absl::StrAppend(&key, "/", name, "=", value);
  return key;
}

bool ProxyInfo::RingHashCrashes() const {
  constexpr std::string_view kCore = "C-core ";
  if (!proxyless_grpc || !std::string_view(user_agent_version).starts_with(kCore)) return false;
  int major = 0;
  std::string version = user_agent_version.substr(kCore.size());
  return absl::SimpleAtoi(version.substr(0, version.find('.')), &major) && major < 30;
}

absl::StatusOr<ProxyInfo> ParseProxyInfo(const envoy::config::core::v3::Node& node) {
  ProxyInfo proxy;
  proxy.id = node.id();
  std::vector<std::string> parts = absl::StrSplit(node.id(), '~');
  if (parts.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node.id: \"", node.id(), "\" is not of the form type~ip~pod.namespace~domain"));
  }
  if (parts[0] == "sidecar") {
    proxy.type = ProxyInfo::Type::kSidecar;
  } else if (parts[0] == "router") {
    proxy.type = ProxyInfo::Type::kRouter;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("node.id: unknown proxy type \"", parts[0], "\" (sidecar or router)"));
  }
  proxy.ip = parts[1];
  std::vector<std::string> pod = absl::StrSplit(parts[2], absl::MaxSplits('.', 1));
  proxy.pod_name = pod[0];
  if (pod.size() == 2) proxy.namespace_ = pod[1];
  proxy.dns_domain = parts[3];

  const google::protobuf::Struct& metadata = node.metadata();
  if (std::string ns = StringField(metadata, "NAMESPACE"); !ns.empty()) proxy.namespace_ = ns;
  if (proxy.namespace_.empty()) {
    return absl::InvalidArgumentError(
        "node: no namespace in node.id (pod.namespace) nor in metadata.NAMESPACE");
  }
  proxy.proxyless_grpc = StringField(metadata, "GENERATOR") == "grpc";
  proxy.user_agent_version = node.user_agent_version();
  proxy.locality = {node.locality().region(), node.locality().zone(), node.locality().sub_zone()};
  if (auto it = metadata.fields().find("LABELS");
      it != metadata.fields().end() && it->second.has_struct_value()) {
    for (const auto& [key, value] : it->second.struct_value().fields()) {
      if (value.has_string_value()) proxy.labels[key] = value.string_value();
    }
  }
  return proxy;
}

}  // namespace meshpilot::translator
