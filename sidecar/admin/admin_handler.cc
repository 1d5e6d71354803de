#include "sidecar/admin/admin_handler.h"

#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace meshpilot::sidecar::admin {
namespace {

using nlohmann::json;

json ToJson(const google::protobuf::Message& message) {
  std::string text;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(message, &text, options).ok()) {
    return json{{"error", absl::StrCat("cannot render ", message.GetTypeName())}};
  }
  return json::parse(text);
}

// The resource without its Any wrapper's "@type" (Envoy's dumps show the message itself).
json ResourceJson(const AppliedResource& resource) {
  json value = ToJson(*resource.resource);
  if (value.is_object()) value.erase("@type");
  return value;
}

}  // namespace

std::string AdminHandler::ConfigDump() const {
  std::shared_ptr<const ProxyConfig> config = store_.Load();
  auto section = [&](XdsType type) -> const TypeDump& {
    return config->dump[static_cast<size_t>(type)];
  };
  json configs = json::array();
  configs.push_back({{"@type", "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"},
                     {"bootstrap", {{"node", ToJson(node_)}}}});
  {
    const TypeDump& d = section(XdsType::kCluster);
    json clusters = json::array();
    for (const AppliedResource& r : d.resources) {
      clusters.push_back({{"version_info", r.version}, {"cluster", ResourceJson(r)},
                          {"last_updated", r.last_updated}});
    }
    configs.push_back({{"@type", "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"},
                       {"version_info", d.version_info},
                       {"dynamic_active_clusters", clusters},
                       {"last_error", d.last_error}});
  }
  {
    const TypeDump& d = section(XdsType::kEndpoint);
    json endpoints = json::array();
    for (const AppliedResource& r : d.resources) {
      endpoints.push_back({{"version_info", r.version}, {"endpoint_config", ResourceJson(r)},
                           {"last_updated", r.last_updated}});
    }
    configs.push_back({{"@type", "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"},
                       {"version_info", d.version_info},
                       {"dynamic_endpoint_configs", endpoints},
                       {"last_error", d.last_error}});
  }
  {
    const TypeDump& d = section(XdsType::kListener);
    json listeners = json::array();
    for (const AppliedResource& r : d.resources) {
      listeners.push_back({{"name", r.name},
                           {"active_state",
                            {{"version_info", r.version}, {"listener", ResourceJson(r)},
                             {"last_updated", r.last_updated}}}});
    }
    configs.push_back({{"@type", "type.googleapis.com/envoy.admin.v3.ListenersConfigDump"},
                       {"version_info", d.version_info},
                       {"dynamic_listeners", listeners},
                       {"last_error", d.last_error}});
  }
  {
    const TypeDump& d = section(XdsType::kRoute);
    json routes = json::array();
    for (const AppliedResource& r : d.resources) {
      routes.push_back({{"version_info", r.version}, {"route_config", ResourceJson(r)},
                        {"last_updated", r.last_updated}});
    }
    configs.push_back({{"@type", "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"},
                       {"version_info", d.version_info},
                       {"dynamic_route_configs", routes},
                       {"last_error", d.last_error}});
  }
  return json{{"configs", configs}}.dump(1);
}

std::string AdminHandler::Clusters() const {
  std::shared_ptr<const ProxyConfig> config = store_.Load();
  std::string out;
  for (const auto& [name, cluster] : config->clusters) {
    const ClusterStats& s = *cluster.stats;
    absl::StrAppend(&out, name, "::observability_name::", name, "\n");
    absl::StrAppend(&out, name, "::upstream_cx_active::", s.upstream_cx_active.load(), "\n");
    absl::StrAppend(&out, name, "::upstream_rq_total::", s.upstream_rq_total.load(), "\n");
    if (!cluster.lb) continue;
    const upstream::OutlierDetector* outlier = cluster.lb->outlier();
    const auto now = upstream::OutlierDetector::Clock::now();
    for (const upstream::Host* host : cluster.lb->Hosts()) {
      const std::string prefix =
          absl::StrCat(name, "::", upstream::AddressString(host->address), "::");
      absl::StrAppend(&out, prefix, "rq_active::", host->active_requests.load(), "\n");
      absl::StrAppend(&out, prefix, "rq_total::", host->total_requests.load(), "\n");
      const bool ejected = outlier != nullptr && outlier->Ejected(*host, now);
      absl::StrAppend(&out, prefix, "health_flags::",
                      ejected ? "/failed_outlier_check" : "healthy", "\n");
      absl::StrAppend(&out, prefix, "weight::", host->weight, "\n");
      absl::StrAppend(&out, prefix, "zone::", host->zone, "\n");
      absl::StrAppend(&out, prefix, "priority::", host->priority, "\n");
    }
  }
  return out;
}

AdminResponse AdminHandler::Handle(const std::string& method, const std::string& target) const {
  const std::string path = target.substr(0, target.find('?'));
  if (path == "/ready" || path == "/healthz/ready") {
    if (draining_) return {503, "text/plain", "DRAINING\n"};
    if (store_.Load()->initialized) return {200, "text/plain", "LIVE\n"};
    return {503, "text/plain", "PRE_INITIALIZING\n"};
  }
  if (path == "/config_dump") return {200, "application/json", ConfigDump()};
  if (path == "/clusters") return {200, "text/plain", Clusters()};
  if (path == "/stats") return {200, "text/plain", stats_.RenderText()};
  if (path == "/stats/prometheus") {
    return {200, "text/plain; version=0.0.4", stats_.RenderPrometheus()};
  }
  if (path == "/quitquitquit") {
    if (method != "POST") return {405, "text/plain", "use POST\n"};
    if (quit_) quit_();
    return {200, "text/plain", "OK\n"};
  }
  if (path == "/drain_listeners") {
    // Stop accepting (at once, or after the drain time); connections in flight finish,
    // keep-alive ones close after their current request.
    if (method != "POST") return {405, "text/plain", "use POST\n"};
    DrainRequest request;
    const size_t query = target.find('?');
    if (query != std::string::npos) {
      for (absl::string_view param : absl::StrSplit(target.substr(query + 1), '&')) {
        const absl::string_view name = param.substr(0, param.find('='));
        if (name == "inboundonly") {
          request.inbound_only = true;
        } else if (name == "graceful") {
          request.graceful = true;
        } else if (name != "skip_exit" && !name.empty()) {  // meshproxy never exits on a drain
          return {400, "text/plain", absl::StrCat("unknown query parameter: ", name, "\n")};
        }
      }
    }
    draining_ = true;
    if (drain_) drain_(request);
    return {200, "text/plain", "OK\n"};
  }
  if (path == "/" || path == "/help") {
    return {200, "text/plain",
            "admin commands are:\n  /clusters\n  /config_dump\n  /drain_listeners (POST)\n"
            "  /healthz/ready\n  /quitquitquit (POST)\n  /ready\n  /stats\n  /stats/prometheus\n"};
  }
  return {404, "text/plain", absl::StrCat("no such admin endpoint: ", path, "\n")};
}

}  // namespace meshpilot::sidecar::admin
