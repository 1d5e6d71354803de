#include "controlplane/debug/debug_handler.h"

#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"

namespace meshpilot::debug {
namespace {

using cache::ResourceType;
using nlohmann::json;

DebugResponse Json(int status, const json& body) {
  return DebugResponse{.status = status, .body = body.dump(2)};
}

DebugResponse Error(int status, const std::string& message) {
  return Json(status, json{{"error", message}});
}

std::string Rfc3339(std::chrono::system_clock::time_point time) {
  return absl::FormatTime(absl::RFC3339_sec, absl::FromChrono(time), absl::UTCTimeZone());
}

json ResourceJson(const cache::Resource& resource) {
  std::string text;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(resource.body, &text, options).ok()) {
    return json{{"error", "cannot render " + resource.body.type_url()}};
  }
  return json::parse(text);
}

json TypeJson(const xds::TypeStatus& status) {
  json names = json::array();
  for (const std::string& name : status.names) names.push_back(name);
  return json{{"subscribed", status.subscribed}, {"wildcard", status.wildcard},
              {"resource_names", names},     {"sent_version", status.sent_version},
              {"sent_nonce", status.sent_nonce}, {"acked_version", status.acked_version},
              {"nacked_version", status.nacked_version}, {"nack_error", status.nack_error},
              {"pushes", status.pushes},     {"rejects", status.rejects},
              {"rejected", status.rejected}, {"held", status.held}};
}

json ProxyJson(const translator::ProxyInfo& proxy) {
  return json{{"id", proxy.id},
              {"ip", proxy.ip},
              {"pod", proxy.pod_name},
              {"namespace", proxy.namespace_},
              {"generator", proxy.proxyless_grpc ? "grpc" : "envoy"},
              {"labels", proxy.labels}};
}

}  // namespace

DebugHandler::DebugHandler(xds::AdsServer& ads, cache::SnapshotCache& cache, Metrics& metrics,
                           std::function<bool()> ready)
    : ads_(ads), cache_(cache), metrics_(metrics), ready_(std::move(ready)) {}

DebugResponse DebugHandler::Handle(const std::string& path,
                                   const std::map<std::string, std::string>& query) const {
  if (path == "/ready") return Ready();
  if (path == "/metrics") {
    return DebugResponse{.content_type = "text/plain; version=0.0.4", .body = metrics_.Render()};
  }
  if (path == "/debug/syncz") return Json(200, SyncZ());
  if (path == "/debug/config_dump") {
    auto it = query.find("proxyID");
    if (it == query.end() || it->second.empty()) {
      return Error(400, "missing query parameter proxyID (full node id or POD.NAMESPACE)");
    }
    return ConfigDump(it->second);
  }
  if (path == "/debug/registryz") return Json(200, RegistryZ());
  if (path == "/debug/endpointz") return Json(200, EndpointZ());
  if (path == "/debug/configz") return Json(200, ConfigZ());
  if (path == "/debug/adsz") return Json(200, AdsZ());
  if (path == "/debug" || path == "/debug/") {
    return Json(200, json{{"endpoints",
                           {"/ready", "/metrics", "/debug/syncz", "/debug/config_dump?proxyID=",
                            "/debug/registryz", "/debug/endpointz", "/debug/configz",
                            "/debug/adsz"}}});
  }
  return Error(404, "no such endpoint: " + path);
}

DebugResponse DebugHandler::Ready() const {
  if (ready_()) return DebugResponse{.content_type = "text/plain", .body = "ready\n"};
  return DebugResponse{
      .status = 503, .content_type = "text/plain", .body = "config sources have not synced\n"};
}

json DebugHandler::SyncZ() const {
  json result = json::array();
  for (const xds::StreamStatus& stream : ads_.Streams()) {
    json entry{{"proxy", stream.proxy.id},
               {"connection_id", stream.connection_id},
               {"protocol", std::string(xds::ProtocolName(stream.protocol))}};
    // Istio's field names first (cluster_sent, cluster_acked, ...), then meshpilot's detail.
    static constexpr std::array<const char*, 4> kIstioNames = {"cluster", "endpoint",
                                                               "listener", "route"};
    json types = json::object();
    // Make before break at a glance: the types whose last response the proxy rejected (it
    // runs older ones), and the clusters and endpoints it keeps because those may name them.
    json rejected = json::array();
    json held = json::object();
    for (ResourceType type : cache::kPushOrder) {
      const xds::TypeStatus& status = stream.types[static_cast<size_t>(type)];
      std::string prefix = kIstioNames[static_cast<size_t>(type)];
      std::string name(cache::ShortName(type));
      entry[prefix + "_sent"] = status.sent_nonce;
      entry[prefix + "_acked"] = status.acked_version;
      types[name] = TypeJson(status);
      if (status.rejected) rejected.push_back(name);
      if (!status.held.empty()) held[name] = status.held;
    }
    entry["rejected"] = rejected;
    entry["held"] = held;
    entry["types"] = types;
    result.push_back(entry);
  }
  return result;
}

DebugResponse DebugHandler::ConfigDump(const std::string& proxy_id) const {
  for (const xds::StreamStatus& stream : ads_.Streams()) {
    if (stream.proxy.id != proxy_id && stream.proxy.ShortId() != proxy_id) continue;
    absl::StatusOr<cache::SnapshotPtr> snapshot = cache_.SnapshotFor(stream.proxy);
    if (!snapshot.ok()) return Error(503, std::string(snapshot.status().message()));
    // The shape of Envoy's /config_dump, so that tools reading one read the other.
    struct Section {
      ResourceType type;
      const char* dump_type;
      const char* list;
      const char* field;
    };
    static constexpr std::array<Section, 4> kSections = {{
        {ResourceType::kCluster, "ClustersConfigDump", "dynamic_active_clusters", "cluster"},
        {ResourceType::kEndpoint, "EndpointsConfigDump", "dynamic_endpoint_configs",
         "endpoint_config"},
        {ResourceType::kListener, "ListenersConfigDump", "dynamic_listeners", "listener"},
        {ResourceType::kRoute, "RoutesConfigDump", "dynamic_route_configs", "route_config"},
    }};
    json configs = json::array();
    for (const Section& section : kSections) {
      json items = json::array();
      for (const auto& [name, resource] : (*snapshot)->Resources(section.type)) {
        json item{{"name", name}, {"version_info", resource->version},
                  {section.field, ResourceJson(*resource)}};
        items.push_back(item);
      }
      configs.push_back(json{{"@type", std::string("type.googleapis.com/envoy.admin.v3.") +
                                           section.dump_type},
                             {section.list, items}});
    }
    return Json(200, json{{"proxy", ProxyJson(stream.proxy)}, {"configs", configs}});
  }
  return Error(404, "proxy not connected: " + proxy_id);
}

json DebugHandler::RegistryZ() const {
  json result = json::array();
  model::MeshStatePtr state = cache_.state();
  if (state == nullptr) return result;
  for (const auto& [key, service] : state->services) {
    json ports = json::array();
    for (const model::ServicePort& port : service.ports) {
      ports.push_back(json{{"name", port.name},
                           {"port", port.port},
                           {"protocol", std::string(model::ProtocolName(port.protocol))},
                           {"target_port", port.target_port},
                           {"target_port_name", port.target_port_name}});
    }
    result.push_back(json{{"hostname", service.Hostname()},
                          {"namespace", service.meta.namespace_},
                          {"name", service.meta.name},
                          {"cluster_ip", service.cluster_ip},
                          {"labels", service.meta.labels},
                          {"selector", service.selector},
                          {"ports", ports}});
  }
  return result;
}

json DebugHandler::EndpointZ() const {
  json result = json::array();
  model::MeshStatePtr state = cache_.state();
  if (state == nullptr) return result;
  for (const auto& [key, endpoints] : state->endpoints) {
    json list = json::array();
    for (const model::Endpoint& endpoint : endpoints) {
      list.push_back(json{{"address", endpoint.address},
                          {"port", endpoint.port},
                          {"port_name", endpoint.port_name},
                          {"ready", endpoint.ready},
                          {"pod", endpoint.pod_name},
                          {"service_account", endpoint.service_account},
                          {"labels", endpoint.labels},
                          {"locality", endpoint.locality.region + "/" + endpoint.locality.zone +
                                           "/" + endpoint.locality.subzone}});
    }
    result.push_back(json{{"service", key}, {"endpoints", list}});
  }
  return result;
}

json DebugHandler::ConfigZ() const {
  json configs = json::array();
  json errors = json::array();
  json warnings = json::array();
  model::MeshStatePtr state = cache_.state();
  if (state == nullptr) {
    return json{{"configs", configs}, {"errors", errors}, {"warnings", warnings}};
  }
  auto add = [&configs](const char* kind, const model::ObjectMeta& meta) {
    configs.push_back(json{{"kind", kind},
                           {"namespace", meta.namespace_},
                           {"name", meta.name},
                           {"resource_version", meta.resource_version},
                           {"status", "Accepted"}});
  };
  for (const auto& [key, vs] : state->virtual_services) add("VirtualService", vs.meta);
  for (const auto& [key, dr] : state->destination_rules) add("DestinationRule", dr.meta);
  for (const auto& [key, ap] : state->authorization_policies) add("AuthorizationPolicy", ap.meta);
  auto describe = [](const model::ConfigError& error, const char* status) {
    return json{{"origin", error.origin},   {"kind", error.kind},
                {"namespace", error.namespace_}, {"name", error.name},
                {"status", status},         {"message", error.message}};
  };
  for (const model::ConfigError& error : state->errors) {
    errors.push_back(describe(error, "Rejected"));
  }
  for (const model::ConfigError& warning : cache_.warnings()) {
    json entry = describe(warning, "Warning");
    entry["type"] = json{{"name", warning.type.name}};
    if (!warning.type.code.empty()) entry["type"]["code"] = warning.type.code;
    warnings.push_back(std::move(entry));
  }
  return json{{"version", state->version},
              {"configs", configs},
              {"errors", errors},
              {"warnings", warnings}};
}

json DebugHandler::AdsZ() const {
  json clients = json::array();
  for (const xds::StreamStatus& stream : ads_.Streams()) {
    json watches = json::object();
    for (ResourceType type : cache::kPushOrder) {
      const xds::TypeStatus& status = stream.types[static_cast<size_t>(type)];
      if (!status.subscribed) continue;
      json names = json::array();
      if (status.wildcard) names.push_back("*");
      for (const std::string& name : status.names) names.push_back(name);
      watches[std::string(cache::TypeUrl(type))] = names;
    }
    clients.push_back(json{{"connectionId", stream.connection_id},
                           {"protocol", std::string(xds::ProtocolName(stream.protocol))},
                           {"connectedAt", Rfc3339(stream.connected_at)},
                           {"address", stream.peer},
                           {"proxy", ProxyJson(stream.proxy)},
                           {"watches", watches}});
  }
  return json{{"totalClients", clients.size()}, {"clients", clients}};
}

}  // namespace meshpilot::debug
