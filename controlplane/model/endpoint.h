#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace meshpilot::model {

struct Locality {
  std::string region;
  std::string zone;
  std::string subzone;

  bool operator==(const Locality&) const = default;
  auto operator<=>(const Locality&) const = default;
};

// One address:port serving one named port of a Service, joined with the Pod its
// targetRef names (labels, service account, locality), as Istio does.
struct Endpoint {
  std::string address;
  uint32_t port = 0;
  std::string port_name;  // the EndpointSlice/Endpoints port name; "" for a single unnamed port
  bool ready = true;
  std::map<std::string, std::string> labels;
  Locality locality;
  std::string pod_name;
  std::string namespace_;
  std::string service_account;
};

}  // namespace meshpilot::model
