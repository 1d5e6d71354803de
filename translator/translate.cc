#include "translator/translate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "translator/authorization.h"
#include "translator/destination_rule_index.h"
#include "translator/inbound.h"
#include "translator/virtual_service_index.h"

namespace meshpilot::translator {

namespace {

template <typename T>
void AppendSorted(std::vector<T>& into, std::vector<T> more) {
  for (T& item : more) into.push_back(std::move(item));
  std::sort(into.begin(), into.end(), [](const T& a, const T& b) { return a.name() < b.name(); });
}

}  // namespace

ProxyResources Translate(const model::MeshState& state, const ProxyInfo& proxy) {
  ProxyResources resources = TranslateOutbound(state, proxy);
  ProxyResources workload = TranslateWorkload(state, proxy);
  AppendSorted(resources.clusters, std::move(workload.clusters));
  AppendSorted(resources.listeners, std::move(workload.listeners));
  return resources;
}

ProxyResources TranslateOutbound(const model::MeshState& state, const ProxyInfo& proxy) {
  return ProxyResources{
      .clusters = BuildClusters(state, proxy),
      .endpoints = BuildLoadAssignments(state, proxy),
      .listeners = BuildListeners(state, proxy),
      .routes = BuildRouteConfigurations(state, proxy),
  };
}

ProxyResources TranslateWorkload(const model::MeshState& state, const ProxyInfo& proxy) {
  ProxyResources resources;
  if (proxy.proxyless_grpc) {
    resources.listeners = GrpcServerListeners(state, proxy);
  } else {
    resources.clusters = InboundClusters(state, proxy);
    resources.listeners.push_back(VirtualInboundListener(state, proxy));
  }
  return resources;
}

std::set<std::string> OutboundLabelKeys(const model::MeshState& state) {
  std::set<std::string> keys;
  auto add = [&keys](const auto& rules) {
    for (const auto& rule : rules) {
      for (const auto& match : rule.match) {
        for (const auto& [label, value] : match.source_labels) keys.insert(label);
      }
    }
  };
  for (const auto& [key, vs] : state.virtual_services) {
    add(vs.http);
    add(vs.tcp);
    add(vs.tls);
  }
  for (const auto& [key, rule] : state.destination_rules) {
    if (!rule.workload_selector) continue;
    for (const auto& [label, value] : *rule.workload_selector) keys.insert(label);
  }
  return keys;
}

std::string OutboundKey(const ProxyInfo& proxy, const std::set<std::string>& label_keys) {
  std::string key = absl::StrCat(proxy.proxyless_grpc ? "grpc" : "sidecar", "/", proxy.namespace_);
  if (proxy.RingHashCrashes()) key += "/no-ring-hash";
  // Endpoint priorities and locality weights depend on where the proxy runs.
  const model::Locality& locality = proxy.locality;
  if (locality != model::Locality{}) {
    absl::StrAppend(&key, "/locality=", locality.region, "/", locality.zone, "/", locality.subzone);
  }
  for (const std::string& label : label_keys) {
    auto it = proxy.labels.find(label);
    if (it != proxy.labels.end()) absl::StrAppend(&key, "/", label, "=", it->second);
  }
  return key;
}

std::vector<model::ConfigError> CheckConfig(const model::MeshState& state) {
  std::vector<model::ConfigError> warnings = CheckVirtualServices(state);
  std::vector<model::ConfigError> more = CheckDestinationRules(state);
  warnings.insert(warnings.end(), more.begin(), more.end());
  more = CheckAuthorizationPolicies(state);
  warnings.insert(warnings.end(), more.begin(), more.end());
  return warnings;
}

}  // namespace meshpilot::translator
