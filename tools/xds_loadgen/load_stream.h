#pragma once

// One Envoy-like ADS state-of-the-world stream: subscribes CDS and LDS wildcard, then EDS for
// the EDS clusters and RDS for the route names the listeners carry, ACKs every response, and
// timestamps when it first holds all four types and when an EDS response first carries a
// watched endpoint address.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "envoy/service/discovery/v3/ads.grpc.pb.h"

namespace meshpilot::loadgen {

using Clock = std::chrono::steady_clock;
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

// What a stream reports to the fleet; called from gRPC's callback threads.
struct StreamEvents {
  std::function<void()> synced;
  std::function<void()> changed;
  std::function<void()> done;
};

class LoadStream : public grpc::ClientBidiReactor<DiscoveryRequest, DiscoveryResponse> {
 public:
  // `watch_needle` is the wire encoding of SocketAddress.address == the watched address (empty:
  // watch nothing).
  LoadStream(envoy::config::core::v3::Node node, std::string watch_needle, StreamEvents events);

  void Start(envoy::service::discovery::v3::AggregatedDiscoveryService::Stub& stub);
  void Cancel() { context_.TryCancel(); }
  // From now on, the first EDS response that carries the watched address counts as the change.
  // Returns whether the last EDS response already carried it (a broken benchmark setup).
  bool ArmWatch();

  // Read after the `done` event (or under the fleet's own synchronization for the times).
  std::optional<Clock::duration> sync_time() const;
  std::optional<Clock::time_point> changed_at() const;
  const grpc::Status& status() const { return status_; }
  uint64_t responses() const { return responses_.load(); }
  uint64_t bytes() const { return bytes_.load(); }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  // One xDS type's subscription as the client sees it.
  struct TypeState {
    std::string version;
    std::string nonce;
    std::set<std::string> names;
    bool received = false;  // a response arrived since the names last changed
  };

  void HandleLocked(const DiscoveryResponse& response);
  void SendLocked(const std::string& type_url, const TypeState& state);
  void CheckSyncedLocked();

  envoy::config::core::v3::Node node_;
  std::string watch_needle_;
  StreamEvents events_;
  grpc::ClientContext context_;
  DiscoveryResponse response_;

  mutable std::mutex mu_;
  std::deque<DiscoveryRequest> writes_;  // front is in flight
  bool node_sent_ = false;
  TypeState cds_, eds_, lds_, rds_;
  Clock::time_point started_;
  std::optional<Clock::time_point> synced_at_;
  bool watch_armed_ = false;
  bool last_eds_has_watched_ = false;
  std::optional<Clock::time_point> changed_at_;
  grpc::Status status_;
  std::atomic<uint64_t> responses_{0};
  std::atomic<uint64_t> bytes_{0};
};

// The bytes that encode `address` as envoy.config.core.v3.SocketAddress.address (field 2).
std::string SocketAddressNeedle(const std::string& address);

}  // namespace meshpilot::loadgen
