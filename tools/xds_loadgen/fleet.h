#pragma once

// A fleet of LoadStreams spread over a few gRPC channels (one HTTP/2 connection each), with
// counters the main thread waits on.

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tools/xds_loadgen/load_stream.h"

namespace meshpilot::loadgen {

struct FleetOptions {
  std::string server = "127.0.0.1:15010";
  int streams = 1;
  std::vector<std::string> namespaces = {"default"};
  int channels = 0;  // 0: one per 100 streams
  int distinct_ips = 0;  // sidecar IPs cycle over this many; 0: one per stream
  std::string watch_address;
};

// `sidecar~IP~load-N.NS~NS.svc.cluster.local`; the IP (never dialed) is derived from `ip_index`.
std::string NodeId(int index, int ip_index, const std::string& namespace_);

class Fleet {
 public:
  explicit Fleet(FleetOptions options);
  ~Fleet();

  void Start();
  // Until every stream holds all four types, or ended, or `deadline`. True if all synced.
  bool WaitSynced(Clock::time_point deadline);
  // Arms every stream's watch; returns how many already held the watched address.
  int ArmWatch();
  // Until every live stream has seen the watched address, or `deadline`.
  bool WaitChanged(Clock::time_point deadline);
  // Cancels every stream and waits for them to end.
  void Stop();

  const std::vector<std::unique_ptr<LoadStream>>& streams() const { return streams_; }
  int ended() const;

 private:
  FleetOptions options_;
  std::vector<std::unique_ptr<envoy::service::discovery::v3::AggregatedDiscoveryService::Stub>>
      stubs_;
  std::vector<std::unique_ptr<LoadStream>> streams_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  int synced_ = 0;
  int changed_ = 0;
  int ended_ = 0;
};

}  // namespace meshpilot::loadgen
