#include "controlplane/debug/metrics.h"

#include <sstream>

#include "prometheus/text_serializer.h"

namespace meshpilot::debug {
namespace {

const prometheus::Histogram::BucketBoundaries kLatencyBuckets = {
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 3, 5, 10, 20, 30};

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& pushes = prometheus::BuildCounter()
                     .Name("pilot_xds_pushes")
                     .Help("Pilot build and send errors for lds, rds, cds and eds.")
                     .Register(*registry_);
  auto& rejects = prometheus::BuildCounter()
                      .Name("pilot_total_xds_rejects")
                      .Help("Total number of XDS responses from pilot rejected by proxy.")
                      .Register(*registry_);
  auto& push_time = prometheus::BuildHistogram()
                        .Name("pilot_xds_push_time")
                        .Help("Total time in seconds Pilot takes to push lds, rds, cds and eds.")
                        .Register(*registry_);
  for (cache::ResourceType type : cache::kPushOrder) {
    std::string name(cache::ShortName(type));
    size_t i = static_cast<size_t>(type);
    pushes_[i] = &pushes.Add({{"type", name}});
    rejects_[i] = &rejects.Add({{"type", name}});
    push_time_[i] = &push_time.Add({{"type", name}}, kLatencyBuckets);
  }
  // Make before break (xds/stream.h): removals a proxy does not get yet because listeners or
  // routes it runs (or may run: un-ACKed, rejected) still name them.
  auto& held = prometheus::BuildGauge()
                   .Name("meshpilot_xds_held_removals")
                   .Help("Clusters (cds) and endpoints (eds) removed from the config that "
                         "connected proxies keep because their current listeners or routes may "
                         "still name them.")
                   .Register(*registry_);
  for (cache::ResourceType type : {cache::ResourceType::kCluster, cache::ResourceType::kEndpoint}) {
    held_removals_[static_cast<size_t>(type)] =
        &held.Add({{"type", std::string(cache::ShortName(type))}});
  }
  convergence_ = &prometheus::BuildHistogram()
                      .Name("pilot_proxy_convergence_time")
                      .Help("Delay in seconds between config change and a proxy receiving all "
                            "required configuration.")
                      .Register(*registry_)
                      .Add({}, kLatencyBuckets);
  connected_ = &prometheus::BuildGauge()
                    .Name("pilot_xds")
                    .Help("Number of endpoints connected to this pilot using XDS.")
                    .Register(*registry_)
                    .Add({{"version", "meshpilot"}});
  config_errors_ = &prometheus::BuildGauge()
                        .Name("meshpilot_config_errors")
                        .Help("Objects rejected by validation in the current config.")
                        .Register(*registry_)
                        .Add({});
  state_pushes_ = &prometheus::BuildCounter()
                       .Name("pilot_push_triggers")
                       .Help("Total number of times a push was triggered.")
                       .Register(*registry_)
                       .Add({{"type", "config"}});
}

void Metrics::RecordPush(cache::ResourceType type, double seconds_to_build) {
  pushes_[static_cast<size_t>(type)]->Increment();
  push_time_[static_cast<size_t>(type)]->Observe(seconds_to_build);
}

void Metrics::RecordReject(cache::ResourceType type) {
  rejects_[static_cast<size_t>(type)]->Increment();
}

void Metrics::AddHeldRemovals(cache::ResourceType type, double delta) {
  if (prometheus::Gauge* gauge = held_removals_[static_cast<size_t>(type)]) gauge->Increment(delta);
}

void Metrics::RecordConvergence(double seconds) { convergence_->Observe(seconds); }
void Metrics::SetConnectedProxies(int count) { connected_->Set(count); }
void Metrics::RecordConfigErrors(int count) { config_errors_->Set(count); }
void Metrics::RecordStatePushed() { state_pushes_->Increment(); }

std::string Metrics::Render() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace meshpilot::debug
