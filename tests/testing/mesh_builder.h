#pragma once

#include <string>
#include <vector>

#include "controlplane/model/mesh_state.h"

// Small builders for MeshStates in unit tests, so each test says only what it is about.
namespace meshpilot::testing {

inline model::Service MakeService(const std::string& ns, const std::string& name,
                                  const std::string& cluster_ip,
                                  std::vector<model::ServicePort> ports) {
  model::Service service;
  service.meta.name = name;
  service.meta.namespace_ = ns;
  service.cluster_ip = cluster_ip;
  service.ports = std::move(ports);
  return service;
}

inline model::ServicePort MakePort(const std::string& name, uint32_t port,
                                   model::Protocol protocol, uint32_t target_port = 0) {
  return model::ServicePort{.name = name,
                            .port = port,
                            .protocol = protocol,
                            .target_port = target_port == 0 ? port : target_port};
}

inline model::Endpoint MakeEndpoint(const std::string& address, uint32_t port,
                                    const std::string& port_name, bool ready = true,
                                    model::Locality locality = {}) {
  return model::Endpoint{.address = address,
                         .port = port,
                         .port_name = port_name,
                         .ready = ready,
                         .locality = std::move(locality)};
}

inline void AddService(model::MeshState& state, model::Service service,
                       std::vector<model::Endpoint> endpoints = {}) {
  std::string key = service.meta.Key();
  state.services[key] = std::move(service);
  if (!endpoints.empty()) state.endpoints[key] = std::move(endpoints);
}

}  // namespace meshpilot::testing
