#pragma once

// The answers of meshproxy's admin endpoints, transport-free: /config_dump, /clusters,
// /stats, /stats/prometheus, /ready, /healthz/ready, /quitquitquit, /drain_listeners.

#include <atomic>
#include <functional>
#include <string>

#include "envoy/config/core/v3/base.pb.h"
#include "sidecar/proxy_config.h"
#include "sidecar/stats.h"

namespace meshpilot::sidecar::admin {

// POST /drain_listeners[?inboundonly][&graceful], as Envoy's: only the listeners whose
// traffic_direction is INBOUND, or all; graceful: they keep accepting for the drain time,
// discouraging requests (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY), and stop after it.
struct DrainRequest {
  bool inbound_only = false;
  bool graceful = false;
};

struct AdminResponse {
  unsigned status = 200;
  std::string content_type = "text/plain";
  std::string body;
};

class AdminHandler {
 public:
  AdminHandler(const ConfigStore& store, StatsStore& stats, envoy::config::core::v3::Node node,
               std::function<void()> quit, std::function<void(DrainRequest)> drain = {})
      : store_(store),
        stats_(stats),
        node_(std::move(node)),
        quit_(std::move(quit)),
        drain_(std::move(drain)) {}

  AdminResponse Handle(const std::string& method, const std::string& target) const;

  std::string ConfigDump() const;
  std::string Clusters() const;

 private:
  const ConfigStore& store_;
  StatsStore& stats_;
  envoy::config::core::v3::Node node_;
  std::function<void()> quit_;
  std::function<void(DrainRequest)> drain_;
  mutable std::atomic<bool> draining_{false};
};

}  // namespace meshpilot::sidecar::admin
