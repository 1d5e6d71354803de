#pragma once

#include <functional>
#include <map>
#include <string>

#include "controlplane/cache/snapshot_cache.h"
#include "controlplane/debug/metrics.h"
#include "controlplane/xds/server.h"
#include "nlohmann/json.hpp"

namespace meshpilot::debug {

struct DebugResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// Answers istiod's debug endpoints from the live server state. Transport-free, so the HTTP
// layer (http_server.cc) stays a thin shell and the answers can be tested directly.
class DebugHandler {
 public:
  DebugHandler(xds::AdsServer& ads, cache::SnapshotCache& cache, Metrics& metrics,
               std::function<bool()> ready);

  DebugResponse Handle(const std::string& path,
                       const std::map<std::string, std::string>& query) const;

 private:
  DebugResponse Ready() const;
  nlohmann::json SyncZ() const;
  DebugResponse ConfigDump(const std::string& proxy_id) const;
  nlohmann::json RegistryZ() const;
  nlohmann::json EndpointZ() const;
  nlohmann::json ConfigZ() const;
  nlohmann::json AdsZ() const;

  xds::AdsServer& ads_;
  cache::SnapshotCache& cache_;
  Metrics& metrics_;
  std::function<bool()> ready_;
};

}  // namespace meshpilot::debug
