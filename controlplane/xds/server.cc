#include "controlplane/xds/server.h"

#include "absl/strings/str_cat.h"
#include "controlplane/xds/delta_stream.h"
#include "controlplane/xds/stream.h"

namespace meshpilot::xds {

AdsServer::AdsServer(cache::SnapshotCache& cache, debug::Metrics& metrics)
    : cache_(cache), metrics_(metrics) {}

grpc::ServerBidiReactor<envoy::service::discovery::v3::DiscoveryRequest,
                        envoy::service::discovery::v3::DiscoveryResponse>*
AdsServer::StreamAggregatedResources(grpc::CallbackServerContext* context) {
  // Owned by gRPC until OnDone, where it deletes itself.
  return new AdsStream(*this, context);
}

grpc::ServerBidiReactor<envoy::service::discovery::v3::DeltaDiscoveryRequest,
                        envoy::service::discovery::v3::DeltaDiscoveryResponse>*
AdsServer::DeltaAggregatedResources(grpc::CallbackServerContext* context) {
  return new DeltaStream(*this, context);
}

void AdsServer::PushAll() {
  std::lock_guard lock(mu_);
  for (Stream* stream : streams_) stream->Push();
}

void AdsServer::CloseAll() {
  std::lock_guard lock(mu_);
  closing_ = true;
  for (Stream* stream : streams_) {
    stream->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "meshpilot is shutting down"));
  }
}

std::vector<StreamStatus> AdsServer::Streams() const {
  std::lock_guard lock(mu_);
  std::vector<StreamStatus> result;
  for (const Stream* stream : streams_) {
    if (stream->HasProxy()) result.push_back(stream->Status());
  }
  return result;
}

std::string AdsServer::NextConnectionId(const std::string& node_id) {
  return absl::StrCat(node_id, "-", ++connection_counter_);
}

void AdsServer::Register(Stream* stream) {
  std::lock_guard lock(mu_);
  streams_.insert(stream);
  metrics_.SetConnectedProxies(streams_.size());
  if (closing_) {
    stream->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "meshpilot is shutting down"));
  }
}

void AdsServer::Unregister(Stream* stream) {
  std::lock_guard lock(mu_);
  streams_.erase(stream);
  metrics_.SetConnectedProxies(streams_.size());
}

}  // namespace meshpilot::xds
