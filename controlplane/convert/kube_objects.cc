#include "controlplane/convert/kube_objects.h"

#include <tuple>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "controlplane/convert/validation.h"

namespace meshpilot::convert {
namespace {

constexpr absl::string_view kServiceNameLabel = "kubernetes.io/service-name";

model::Protocol ParseProtocolName(absl::string_view name) {
  std::string lower = absl::AsciiStrToLower(name);
  if (lower == "http" || lower == "http_proxy") return model::Protocol::kHttp;
  if (lower == "http2") return model::Protocol::kHttp2;
  if (lower == "grpc") return model::Protocol::kGrpc;
  if (lower == "https") return model::Protocol::kHttps;
  if (lower == "tls") return model::Protocol::kTls;
  if (lower == "udp") return model::Protocol::kUdp;
  // tcp, mongo, redis, mysql and names Istio does not know: opaque TCP.
  return model::Protocol::kTcp;
}

// A targetPort given by name must be an IANA service name, as Kubernetes requires.
bool IsPortName(absl::string_view name) {
  if (name.empty() || name.size() > 15) return false;
  bool has_letter = false;
  for (char c : name) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '-') return false;
    has_letter |= absl::ascii_islower(c);
  }
  return has_letter && name.front() != '-' && name.back() != '-' &&
         name.find("--") == absl::string_view::npos;
}

// A `targetRef` naming a Pod: its name and namespace, empty for any other kind.
std::pair<std::string, std::string> ReadPodRef(MapReader& address, absl::string_view namespace_) {
  std::optional<MapReader> ref = address.Map("targetRef");
  if (!ref || ref->String("kind").value_or("") != "Pod") return {};
  std::string pod_namespace = ref->String("namespace").value_or("");
  return {ref->String("name").value_or(""),
          pod_namespace.empty() ? std::string(namespace_) : pod_namespace};
}

std::vector<ServiceEndpoints::Port> ReadEndpointPorts(MapReader& parent) {
  std::vector<ServiceEndpoints::Port> ports;
  for (MapReader& item : parent.Items("ports")) {
    ServiceEndpoints::Port port;
    port.name = item.String("name").value_or("");
    std::optional<uint32_t> number = item.RequiredPort("port");
    if (!number) continue;
    port.port = *number;
    ports.push_back(std::move(port));
  }
  return ports;
}

}  // namespace

model::Protocol DeriveProtocol(absl::string_view port_name, absl::string_view protocol,
                               const std::optional<std::string>& app_protocol) {
  if (absl::AsciiStrToUpper(protocol) == "UDP") return model::Protocol::kUdp;
  absl::string_view name = port_name;
  if (app_protocol) {
    // Kubernetes' standard appProtocol values, which a port name cannot take.
    if (*app_protocol == "kubernetes.io/h2c") return model::Protocol::kHttp2;
    if (*app_protocol == "kubernetes.io/ws") return model::Protocol::kHttp;
    if (*app_protocol == "kubernetes.io/wss") return model::Protocol::kHttps;
    name = *app_protocol;
  }
  // "grpc-web" holds a '-', so it is matched before the prefix is cut.
  if (absl::StartsWithIgnoreCase(name, "grpc-web")) return model::Protocol::kHttp;
  return ParseProtocolName(name.substr(0, name.find('-')));
}

model::ObjectMeta ReadObjectMeta(MapReader& object, bool namespaced) {
  MapReader metadata = object.Child("metadata", /*strict=*/false);
  model::ObjectMeta meta;
  meta.name = metadata.RequiredString("name");
  if (namespaced) {
    meta.namespace_ = metadata.String("namespace").value_or("");
    if (meta.namespace_.empty()) {
      meta.namespace_ = "default";
    } else {
      metadata.CheckField("namespace", ValidateDnsLabel(meta.namespace_));
    }
  }
  meta.labels = metadata.StringMap("labels");
  meta.annotations = metadata.StringMap("annotations");
  meta.resource_version = metadata.String("resourceVersion").value_or("");
  meta.generation = metadata.Int("generation", 0, INT64_MAX).value_or(0);
  return meta;
}

model::Service ReadService(MapReader& object, model::ObjectMeta meta) {
  model::Service service;
  service.meta = std::move(meta);
  MapReader spec = object.Child("spec", /*strict=*/false);
  service.cluster_ip = spec.String("clusterIP").value_or("");
  service.selector = spec.StringMap("selector");

  std::vector<MapReader> ports = spec.Items("ports");
  absl::flat_hash_set<std::string> names;
  absl::flat_hash_set<std::string> port_protocols;  // Kubernetes: a port once per protocol
  for (MapReader& item : ports) {
    model::ServicePort port;
    port.name = item.String("name").value_or("");
    if (ports.size() > 1) {
      if (port.name.empty()) {
        item.FieldError("name", "required when a Service has more than one port");
      } else if (!names.insert(port.name).second) {
        item.FieldError("name", "duplicate port name");
      }
    }
    port.port = item.RequiredPort("port").value_or(0);

    // targetPort is a number or the name of a container port; it defaults to `port`.
    YAML::Node target = item.Raw("targetPort");
    int64_t target_number = 0;
    if (!target.IsDefined()) {
      port.target_port = port.port;
    } else if (YAML::convert<int64_t>::decode(target, target_number)) {
      if (target_number < 1 || target_number > 65535) {
        item.FieldError("targetPort", "must be between 1 and 65535");
      } else {
        port.target_port = static_cast<uint32_t>(target_number);
      }
    } else if (target.IsScalar() && IsPortName(target.Scalar())) {
      port.target_port_name = target.Scalar();
    } else {
      item.FieldError("targetPort", "must be a port number or an IANA service name");
    }

    std::string protocol = item.String("protocol").value_or("TCP");
    if (protocol != "TCP" && protocol != "UDP" && protocol != "SCTP") {
      item.FieldError("protocol", "must be one of TCP, UDP, SCTP");
    }
    if (port.port != 0 &&
        !port_protocols.insert(absl::StrCat(port.port, "/", protocol)).second) {
      item.FieldError("port", absl::StrCat("duplicate port ", port.port, "/", protocol));
    }
    port.protocol = DeriveProtocol(port.name, protocol, item.String("appProtocol"));
    service.ports.push_back(std::move(port));
  }
  return service;
}

ServiceEndpoints ReadEndpoints(MapReader& object, model::ObjectMeta meta) {
  ServiceEndpoints endpoints;
  endpoints.kind = ServiceEndpoints::Kind::kEndpoints;
  endpoints.service_name = meta.name;
  endpoints.meta = std::move(meta);
  for (MapReader& subset : object.Items("subsets")) {
    ServiceEndpoints::Group group;
    for (auto [key, ready] :
         {std::pair{"addresses", true}, std::pair{"notReadyAddresses", false}}) {
      for (MapReader& item : subset.Items(key)) {
        ServiceEndpoints::Address address;
        address.ip = item.RequiredString("ip");
        if (!address.ip.empty()) item.CheckField("ip", ValidateIp(address.ip, false));
        address.ready = ready;
        address.node_name = item.String("nodeName").value_or("");
        std::tie(address.pod_name, address.pod_namespace) =
            ReadPodRef(item, endpoints.meta.namespace_);
        group.addresses.push_back(std::move(address));
      }
    }
    group.ports = ReadEndpointPorts(subset);
    endpoints.groups.push_back(std::move(group));
  }
  return endpoints;
}

ServiceEndpoints ReadEndpointSlice(MapReader& object, model::ObjectMeta meta) {
  ServiceEndpoints slice;
  slice.kind = ServiceEndpoints::Kind::kEndpointSlice;
  if (auto it = meta.labels.find(std::string(kServiceNameLabel)); it != meta.labels.end()) {
    slice.service_name = it->second;
  } else {
    object.FieldError(absl::StrCat("metadata.labels[", kServiceNameLabel, "]"),
                      "required: names the Service of this EndpointSlice");
  }
  slice.meta = std::move(meta);

  // FQDN slices list host names, while a model::Endpoint is an IP address: they are skipped.
  std::string address_type = object.RequiredString("addressType");
  bool is_ip = address_type == "IPv4" || address_type == "IPv6";
  if (!is_ip && !address_type.empty() && address_type != "FQDN") {
    object.FieldError("addressType", "must be one of IPv4, IPv6, FQDN");
  }

  ServiceEndpoints::Group group;
  for (MapReader& item : object.Items("endpoints")) {
    ServiceEndpoints::Address address;
    // An absent ready condition means ready, as the EndpointSlice API specifies.
    address.ready = item.Child("conditions", false).Bool("ready").value_or(true);
    address.node_name = item.String("nodeName").value_or("");
    address.zone = item.String("zone").value_or("");
    std::tie(address.pod_name, address.pod_namespace) = ReadPodRef(item, slice.meta.namespace_);
    std::vector<std::string> ips = item.StringList("addresses");
    if (ips.empty()) item.FieldError("addresses", "required");
    if (!is_ip) continue;
    for (size_t i = 0; i < ips.size(); ++i) {
      item.CheckField(absl::StrCat("addresses[", i, "]"), ValidateIp(ips[i], false));
      address.ip = ips[i];
      group.addresses.push_back(address);
    }
  }
  group.ports = ReadEndpointPorts(object);
  slice.groups.push_back(std::move(group));
  return slice;
}

model::Pod ReadPod(MapReader& object, model::ObjectMeta meta) {
  model::Pod pod;
  MapReader spec = object.Child("spec", /*strict=*/false);
  // Kubernetes fills in the "default" account, and Istio derives the identity from it.
  pod.service_account = spec.String("serviceAccountName").value_or("");
  if (pod.service_account.empty()) pod.service_account = "default";
  pod.node_name = spec.String("nodeName").value_or("");
  pod.ip = object.Child("status", /*strict=*/false).String("podIP").value_or("");

  // Istio's istio-locality label ("region.zone.subzone", dots since labels cannot hold '/')
  // wins over the topology labels.
  const auto& labels = meta.labels;
  auto label = [&labels](absl::string_view key) {
    auto it = labels.find(std::string(key));
    return it == labels.end() ? std::string() : it->second;
  };
  if (std::string locality = label("istio-locality"); !locality.empty()) {
    std::vector<std::string> parts = absl::StrSplit(locality, absl::MaxSplits('.', 2));
    parts.resize(3);
    pod.locality = {parts[0], parts[1], parts[2]};
  } else {
    pod.locality = {label("topology.kubernetes.io/region"), label("topology.kubernetes.io/zone"),
                    label("topology.istio.io/subzone")};
  }
  pod.meta = std::move(meta);
  return pod;
}

}  // namespace meshpilot::convert
