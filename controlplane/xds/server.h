#pragma once

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "controlplane/cache/snapshot_cache.h"
#include "controlplane/debug/metrics.h"
#include "controlplane/xds/rejection_memory.h"
#include "controlplane/xds/stream_status.h"
#include "envoy/service/discovery/v3/ads.grpc.pb.h"

namespace meshpilot::xds {

class Stream;

// The ADS gRPC service, both variants: state of the world (AdsStream) and delta
// (DeltaStream). Accepts streams and fans pushes out to them. It knows streams, nonces and
// ACKs; what each proxy should have comes from the SnapshotCache.
class AdsServer final
    : public envoy::service::discovery::v3::AggregatedDiscoveryService::CallbackService {
 public:
  AdsServer(cache::SnapshotCache& cache, debug::Metrics& metrics);

  grpc::ServerBidiReactor<envoy::service::discovery::v3::DiscoveryRequest,
                          envoy::service::discovery::v3::DiscoveryResponse>*
  StreamAggregatedResources(grpc::CallbackServerContext* context) override;
  grpc::ServerBidiReactor<envoy::service::discovery::v3::DeltaDiscoveryRequest,
                          envoy::service::discovery::v3::DeltaDiscoveryResponse>*
  DeltaAggregatedResources(grpc::CallbackServerContext* context) override;

  // The cache holds a new state: every stream sends what changed for its proxy.
  void PushAll();
  // Ends every stream (shutdown); the gRPC server can then stop without waiting.
  void CloseAll();
  std::vector<StreamStatus> Streams() const;

  // For the streams.
  cache::SnapshotCache& cache() { return cache_; }
  debug::Metrics& metrics() { return metrics_; }
  RejectionMemory& rejections() { return rejections_; }
  std::string NextConnectionId(const std::string& node_id);
  void Register(Stream* stream);
  void Unregister(Stream* stream);

 private:
  cache::SnapshotCache& cache_;
  debug::Metrics& metrics_;
  std::atomic<uint64_t> connection_counter_{0};
  RejectionMemory rejections_;

  mutable std::mutex mu_;
  std::set<Stream*> streams_;
  bool closing_ = false;
};

}  // namespace meshpilot::xds
