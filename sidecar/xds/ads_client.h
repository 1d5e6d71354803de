#pragma once

// The ADS state-of-the-world client: one gRPC stream to the control plane, CDS and LDS
// wildcard, EDS and RDS by the names the applied clusters and listeners need. Every response
// is ACKed or NACKed (with the rejected resources and fields in error_detail); each applied
// response publishes a new ProxyConfig. When the stream breaks it reconnects with exponential
// back-off and full jitter while the data path keeps serving the last config. A second thread
// rebuilds the config when a warming listener or cluster times out (XdsState::Build).

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "envoy/config/core/v3/base.pb.h"
#include "envoy/service/discovery/v3/ads.grpc.pb.h"
#include "sidecar/proxy_config.h"
#include "sidecar/stats.h"
#include "sidecar/xds/xds_state.h"

namespace meshpilot::sidecar::xds {

struct AdsClientOptions {
  std::string server_address;  // host:port
  envoy::config::core::v3::Node node;
  std::chrono::milliseconds initial_backoff{250};
  std::chrono::milliseconds max_backoff{30000};
  // Called on the client's thread after each new config is stored (workers reconcile their
  // listeners from it).
  std::function<void(std::shared_ptr<const ProxyConfig>)> on_update;
};

class AdsClient {
 public:
  AdsClient(AdsClientOptions options, StatsStore& stats, ConfigStore& store);
  ~AdsClient();
  AdsClient(const AdsClient&) = delete;
  AdsClient& operator=(const AdsClient&) = delete;

  void Start();
  void Stop();
  bool connected() const { return connected_.load(); }

 private:
  using Stream = grpc::ClientReaderWriter<envoy::service::discovery::v3::DiscoveryRequest,
                                          envoy::service::discovery::v3::DiscoveryResponse>;
  void Run();
  // One stream until it ends; true if it received at least one response.
  bool RunStream();
  bool SendRequest(Stream& stream, XdsType type, const std::string& version,
                   const std::string& nonce, const std::string& error);
  // Builds and publishes the config from state_ (state_mu_ held).
  void Publish();
  // Rebuilds when the earliest warming timeout passes, until Stop().
  void RunWarmingTimer();

  AdsClientOptions options_;
  StatsStore& stats_;
  ConfigStore& store_;
  std::mutex state_mu_;  // state_ and the publishing of configs, for the two threads
  XdsState state_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<envoy::service::discovery::v3::AggregatedDiscoveryService::Stub> stub_;

  std::mutex mu_;
  std::condition_variable wake_;
  grpc::ClientContext* context_ = nullptr;  // of the live stream, for Stop()
  bool stopping_ = false;
  std::atomic<bool> connected_{false};
  std::thread thread_;
  std::thread warming_thread_;

  // Per stream: what was last sent and received, per type.
  bool node_sent_ = false;
  std::array<std::string, 4> last_nonce_;
  std::array<std::vector<std::string>, 4> sent_names_;
  std::array<bool, 4> subscribed_{};
};

}  // namespace meshpilot::sidecar::xds
