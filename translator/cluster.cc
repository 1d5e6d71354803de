#include "translator/names.h"
#include "translator/subset.h"
#include "translator/traffic_policy.h"
#include "translator/translate.h"

namespace meshpilot::translator {
namespace {

using envoy::config::cluster::v3::Cluster;

Cluster EdsCluster(const std::string& name, const ProxyInfo& proxy) {
  Cluster cluster;
  cluster.set_name(name);
  cluster.set_type(Cluster::EDS);
  auto* eds = cluster.mutable_eds_cluster_config();
  eds->set_service_name(name);
  eds->mutable_eds_config()->mutable_ads();
  eds->mutable_eds_config()->set_resource_api_version(envoy::config::core::v3::V3);
  cluster.mutable_connect_timeout()->set_seconds(10);
  // Istio's default is LEAST_REQUEST; gRPC's xDS client accepts only ROUND_ROBIN and
  // RING_HASH, and istiod's gRPC generator uses ROUND_ROBIN for it.
  cluster.set_lb_policy(proxy.proxyless_grpc ? Cluster::ROUND_ROBIN : Cluster::LEAST_REQUEST);
  return cluster;
}

// The clusters every sidecar has besides the services: where unmatched traffic goes.
void AddSidecarBuiltinClusters(std::vector<Cluster>& clusters) {
  Cluster passthrough;
  passthrough.set_name(std::string(kPassthroughCluster));
  passthrough.set_type(Cluster::ORIGINAL_DST);
  passthrough.set_lb_policy(Cluster::CLUSTER_PROVIDED);
  passthrough.mutable_connect_timeout()->set_seconds(10);
  clusters.push_back(std::move(passthrough));

  Cluster blackhole;
  blackhole.set_name(std::string(kBlackHoleCluster));
  blackhole.set_type(Cluster::STATIC);
  blackhole.mutable_connect_timeout()->set_seconds(10);
  clusters.push_back(std::move(blackhole));
}

}  // namespace

std::vector<Cluster> BuildClusters(const model::MeshState& state, const ProxyInfo& proxy) {
  std::vector<Cluster> clusters;
  for (const OutboundCluster& outbound : BuildOutboundClusters(state, proxy)) {
    Cluster cluster = EdsCluster(outbound.name, proxy);
    ApplyTrafficPolicy(outbound.policy, *outbound.port, proxy, cluster);
    clusters.push_back(std::move(cluster));
  }
  if (!proxy.proxyless_grpc) AddSidecarBuiltinClusters(clusters);
  std::sort(clusters.begin(), clusters.end(),
            [](const Cluster& a, const Cluster& b) { return a.name() < b.name(); });
  return clusters;
}

}  // namespace meshpilot::translator
