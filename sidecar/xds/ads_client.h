#pragma once

// The ADS state-of-the-world client: one gRPC stream to the control plane, CDS and LDS
// wildcard, EDS and RDS by the names the applied clusters and listeners need. Every response
// is ACKed or NACKed (with the rejected resources and fields in error_detail); each applied
// response publishes a new ProxyConfig. When the stream breaks it reconnects with exponential
// back-off and full jitter while the data path keeps serving the last config.
//
// gRPC runs over meshproxy's own HTTP/2 client connection (server::Http2Connection on
// nghttp2), as Envoy's envoy_grpc client runs over Envoy's codec: a POST to
// StreamAggregatedResources with length-prefixed, uncompressed messages each way, the status
// from the trailers. Everything (the stream, the back-off, the warming timer that rebuilds the
// config when a warming listener or cluster times out) runs on one thread's io_context.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "absl/status/status.h"
#include "envoy/config/core/v3/base.pb.h"
#include "sidecar/proxy_config.h"
#include "sidecar/stats.h"
#include "sidecar/xds/xds_state.h"

namespace meshpilot::sidecar::server {
class Http2Connection;
class Http2Stream;
}  // namespace meshpilot::sidecar::server

namespace meshpilot::sidecar::xds {

struct AdsClientOptions {
  std::string server_address;  // host:port ([v6]:port)
  envoy::config::core::v3::Node node;
  std::chrono::milliseconds initial_backoff{250};
  std::chrono::milliseconds max_backoff{30000};
  // A response larger than this ends the stream (RESOURCE_EXHAUSTED, as gRPC's own limit) and
  // is never buffered.
  size_t max_response_bytes = 64 << 20;
  // Called on the client's thread after each new config is stored (workers reconcile their
  // listeners from it).
  std::function<void(std::shared_ptr<const ProxyConfig>)> on_update;
};

// How a gRPC stream ended: its grpc-status (google.rpc.Code) and grpc-message.
struct GrpcEnd {
  uint32_t code = 2;  // UNKNOWN
  std::string message;
};

class AdsClient {
 public:
  AdsClient(AdsClientOptions options, StatsStore& stats, ConfigStore& store);
  ~AdsClient();
  AdsClient(const AdsClient&) = delete;
  AdsClient& operator=(const AdsClient&) = delete;

  void Start();
  // Ends the stream (its connection closes at once) and the thread.
  void Stop();
  bool connected() const { return connected_.load(); }

 private:
  boost::asio::awaitable<void> Run();
  // One stream until it ends; true if it received at least one response.
  boost::asio::awaitable<bool> RunStream();
  // Reads and handles responses until the stream ends; a status if this side ended it, none
  // if the stream's own (trailers, or the connection) says why.
  boost::asio::awaitable<std::optional<GrpcEnd>> ReceiveResponses(server::Http2Stream& stream,
                                                                  bool& progressed);
  // Handles one DiscoveryResponse: apply, publish, then ACK/NACK (and new EDS/RDS names).
  // Not OK: the stream must end (UNAVAILABLE: it is gone already).
  boost::asio::awaitable<absl::Status> OnResponse(server::Http2Stream& stream,
                                                  std::string_view message);
  boost::asio::awaitable<bool> SendRequest(server::Http2Stream& stream, XdsType type,
                                           const std::string& version, const std::string& nonce,
                                           const std::string& error);
  // Builds and publishes the config from state_.
  void Publish();
  // Rebuilds when the earliest warming timeout passes, until Stop().
  boost::asio::awaitable<void> RunWarmingTimer();

  AdsClientOptions options_;
  StatsStore& stats_;
  ConfigStore& store_;
  XdsState state_;  // on the io thread only

  boost::asio::io_context io_{1};
  boost::asio::steady_timer backoff_timer_{io_};
  boost::asio::steady_timer warming_timer_{io_};
  bool stopping_ = false;  // on the io thread
  std::shared_ptr<server::Http2Connection> connection_;  // of the live stream, for Stop()
  std::shared_ptr<ClusterStats> connection_stats_;  // Http2Connection counts into one
  std::atomic<bool> connected_{false};
  std::thread thread_;

  // Per stream: what was last sent and received, per type.
  bool node_sent_ = false;
  std::array<std::string, 4> last_nonce_;
  std::array<std::vector<std::string>, 4> sent_names_;
  std::array<bool, 4> subscribed_{};
};

}  // namespace meshpilot::sidecar::xds
