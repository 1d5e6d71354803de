#pragma once

// An in-process meshpilot ADS server on a real gRPC port, and hand-written ADS clients (state
// of the world and delta) that talk to it over a real channel, so tests assert what a proxy
// sees on the wire.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/cache/resource.h"
#include "controlplane/cache/snapshot_cache.h"
#include "controlplane/debug/metrics.h"
#include "controlplane/model/mesh_state.h"
#include "controlplane/xds/server.h"
#include "envoy/service/discovery/v3/ads.grpc.pb.h"

namespace meshpilot::testing {

using envoy::service::discovery::v3::DeltaDiscoveryRequest;
using envoy::service::discovery::v3::DeltaDiscoveryResponse;
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

inline constexpr char kSidecarNodeId[] =
    "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local";

inline constexpr std::chrono::milliseconds kReadTimeout{20000};
// How long "nothing arrives" is watched for: the only place these tests wait on purpose.
inline constexpr std::chrono::milliseconds kQuietPeriod{300};

inline const std::string kCds{cache::TypeUrl(cache::ResourceType::kCluster)};
inline const std::string kEds{cache::TypeUrl(cache::ResourceType::kEndpoint)};
inline const std::string kLds{cache::TypeUrl(cache::ResourceType::kListener)};
inline const std::string kRds{cache::TypeUrl(cache::ResourceType::kRoute)};

// A Node as istio-agent sends it; `generator` "grpc" makes it a proxyless gRPC client.
envoy::config::core::v3::Node MakeNode(const std::string& id = kSidecarNodeId,
                                       const std::string& generator = "");

// A mesh of `services` HTTP services svc-0..svc-N-1 in namespace "default", each on port
// 8080 ("http") with `endpoints_per_service` ready endpoints split over two zones.
model::MeshState MakeMesh(int services, int endpoints_per_service = 2);
// Adds (or replaces) a service with one port and `endpoints` endpoints.
void AddService(model::MeshState& mesh, const std::string& name, uint32_t port,
                model::Protocol protocol = model::Protocol::kHttp, int endpoints = 2,
                const std::string& cluster_ip = "");
// Removes a service and its endpoints.
void RemoveService(model::MeshState& mesh, const std::string& name);
// outbound|PORT||NAME.default.svc.cluster.local
std::string ClusterName(const std::string& service, uint32_t port = 8080);

// The names of the resources in a response, in order, decoded from each Any's message.
std::vector<std::string> ResourceNames(const DiscoveryResponse& response);
// The same for a delta response (decoded from the resources, not from Resource.name).
std::vector<std::string> ResourceNames(const DeltaDiscoveryResponse& response);

// The control plane under test: SnapshotCache + Metrics + AdsServer behind a grpc::Server on
// 127.0.0.1 and a port the kernel picked.
class AdsTestServer {
 public:
  AdsTestServer();
  ~AdsTestServer();
  AdsTestServer(const AdsTestServer&) = delete;
  AdsTestServer& operator=(const AdsTestServer&) = delete;

  // Installs `state` (with a fresh, increasing version) and pushes it, as the push
  // controller does.
  void SetState(model::MeshState state);
  // True once a state has been installed: what /ready reports.
  bool synced() const { return synced_; }

  int port() const { return port_; }
  std::string address() const;
  cache::SnapshotCache& cache() { return cache_; }
  debug::Metrics& metrics() { return metrics_; }
  xds::AdsServer& ads() { return ads_; }

  // The status of the one stream of `node_id` (nullopt if none is connected).
  std::optional<xds::StreamStatus> StreamOf(const std::string& node_id = kSidecarNodeId) const;
  // Polls the server's stream table until `condition` holds for `node_id`'s stream, for at
  // most `timeout`. For effects that are not visible on the wire (ACK bookkeeping).
  bool WaitForStream(const std::function<bool(const xds::StreamStatus&)>& condition,
                     const std::string& node_id = kSidecarNodeId,
                     std::chrono::milliseconds timeout = kReadTimeout) const;

 private:
  cache::SnapshotCache cache_;
  debug::Metrics metrics_;
  xds::AdsServer ads_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  uint64_t next_version_ = 0;
  std::atomic<bool> synced_ = false;
};

struct AdsClientOptions {
  envoy::config::core::v3::Node node = MakeNode();
  // False: never read responses, like a stuck proxy. The channel then also keeps HTTP/2 flow
  // control windows small so that the server's writes really stall.
  bool read_responses = true;
};

// One ADS stream of either protocol over its own HTTP/2 connection. A reader thread queues
// what the server sends; requests go out from the test's thread.
template <typename Request, typename Response>
class XdsTestStream {
 public:
  ~XdsTestStream();
  XdsTestStream(const XdsTestStream&) = delete;
  XdsTestStream& operator=(const XdsTestStream&) = delete;

  // The next response, or nullopt if none came within `timeout` (or the stream ended).
  std::optional<Response> Read(std::chrono::milliseconds timeout = kReadTimeout);
  // True when no response arrives for `quiet`.
  bool ExpectNothing(std::chrono::milliseconds quiet = kQuietPeriod);
  // The stream's final status once the server ended it, or nullopt after `timeout`.
  std::optional<grpc::Status> WaitForEnd(std::chrono::milliseconds timeout = kReadTimeout);

 protected:
  XdsTestStream(int port, AdsClientOptions options);
  // Sends `request`, with the node if it is the stream's first; the caller holds write_mu_.
  bool WriteLocked(Request request);

  mutable std::mutex write_mu_;  // Write and Finish never overlap

 private:
  void ReadLoop();

  AdsClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<envoy::service::discovery::v3::AggregatedDiscoveryService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<Request, Response>> stream_;
  std::thread reader_;
  bool node_sent_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Response> responses_;
  std::optional<grpc::Status> end_status_;
};

// A state-of-the-world client (StreamAggregatedResources).
class AdsTestClient : public XdsTestStream<DiscoveryRequest, DiscoveryResponse> {
 public:
  explicit AdsTestClient(int port, AdsClientOptions options = {});

  // The node goes out with the first request only, as Envoy sends it.
  bool Send(const std::string& type_url, const std::vector<std::string>& names,
            const std::string& version = "", const std::string& nonce = "",
            std::optional<std::string> error_detail = std::nullopt);
  // ACK / NACK `response`, keeping the current subscription of its type (or `names`).
  bool Ack(const DiscoveryResponse& response,
           std::optional<std::vector<std::string>> names = std::nullopt);
  bool Nack(const DiscoveryResponse& response, const std::string& message);

  // The last ACKed version this client sent for `type_url` ("" if none).
  std::string AckedVersion(const std::string& type_url) const;

 private:
  std::map<std::string, std::vector<std::string>> subscriptions_;
  std::map<std::string, std::string> acked_versions_;
};

// An incremental client (DeltaAggregatedResources). It keeps, per type, the resources it
// holds (name -> version) as an Envoy would: ACKing a response applies it, NACKing does not.
class DeltaTestClient : public XdsTestStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse> {
 public:
  using Versions = std::map<std::string, std::string>;

  explicit DeltaTestClient(int port, AdsClientOptions options = {});

  // Any request; the node goes out with the first one only.
  bool Send(DeltaDiscoveryRequest request);
  // Subscribes to `names` ("*" for the wildcard; none at all on the first request of CDS/LDS
  // is the legacy wildcard), telling the versions it already holds on a reconnect.
  bool Subscribe(const std::string& type_url, const std::vector<std::string>& names,
                 const Versions& initial_versions = {});
  bool Unsubscribe(const std::string& type_url, const std::vector<std::string>& names);
  bool Ack(const DeltaDiscoveryResponse& response);
  bool Nack(const DeltaDiscoveryResponse& response, const std::string& message);

  // What this client holds of `type_url` after the responses it ACKed.
  Versions Held(const std::string& type_url) const;

 private:
  std::map<std::string, Versions> held_;
};

}  // namespace meshpilot::testing
