#pragma once

#include <array>
#include <memory>
#include <string>

#include "controlplane/cache/resource.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace meshpilot::debug {

// The control plane's metrics, under Istio's names so that existing dashboards and alerts
// carry over: pilot_xds_pushes{type}, pilot_total_xds_rejects{type}, pilot_xds (connected
// proxies), pilot_xds_push_time{type}, pilot_proxy_convergence_time, ...; meshpilot_* for
// what Istio has no metric for.
class Metrics {
 public:
  Metrics();

  void RecordPush(cache::ResourceType type, double seconds_to_build);
  void RecordReject(cache::ResourceType type);
  void RecordConvergence(double seconds);
  // Clusters (cds) or endpoints (eds) a stream now holds back from removal, or no longer.
  void AddHeldRemovals(cache::ResourceType type, double delta);
  void SetConnectedProxies(int count);
  void RecordConfigErrors(int count);
  void RecordStatePushed();

  // Prometheus text exposition of everything above.
  std::string Render() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::array<prometheus::Counter*, cache::kResourceTypeCount> pushes_{};
  std::array<prometheus::Counter*, cache::kResourceTypeCount> rejects_{};
  std::array<prometheus::Histogram*, cache::kResourceTypeCount> push_time_{};
  std::array<prometheus::Gauge*, cache::kResourceTypeCount> held_removals_{};  // cds, eds
  prometheus::Histogram* convergence_ = nullptr;
  prometheus::Gauge* connected_ = nullptr;
  prometheus::Gauge* config_errors_ = nullptr;
  prometheus::Counter* state_pushes_ = nullptr;
};

}  // namespace meshpilot::debug
