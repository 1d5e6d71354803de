#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>

#include "controlplane/cache/snapshot.h"
#include "controlplane/xds/stream_status.h"
#include "envoy/service/discovery/v3/ads.grpc.pb.h"

namespace meshpilot::xds {

class AdsServer;

// One state-of-the-world ADS stream. It reads requests, tracks per type the subscription,
// the nonce in flight and the ACKed/NACKed versions, and writes responses in push order
// (CDS, EDS, LDS, RDS). At most one response per type is un-ACKed at a time; newer state
// waits behind it and goes out, coalesced, when the client answers. Writes are queued, so a
// slow client only ever slows itself.
class AdsStream
    : public grpc::ServerBidiReactor<envoy::service::discovery::v3::DiscoveryRequest,
                                     envoy::service::discovery::v3::DiscoveryResponse> {
 public:
  AdsStream(AdsServer& server, grpc::CallbackServerContext* context);

  // A new state was installed in the cache: send whatever changed for this proxy.
  void Push();
  // Ends the stream from the server side (shutdown).
  void Close(const grpc::Status& status);
  StreamStatus Status() const;
  bool HasProxy() const;

  // grpc::ServerBidiReactor
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;

 private:
  using Request = envoy::service::discovery::v3::DiscoveryRequest;
  using Response = envoy::service::discovery::v3::DiscoveryResponse;

  struct TypeState {
    TypeStatus status;
    bool awaiting_ack = false;
    bool force = false;  // send even if the version did not change
    bool named = false;  // the client has named resources (even "*"): no legacy wildcard
    std::chrono::steady_clock::time_point sent_at;
  };

  void HandleRequest(const Request& request);
  void PushLocked();
  // The response for `type` at `snapshot`, or nullopt when there is nothing new to send.
  std::optional<Response> Diff(cache::ResourceType type, const cache::Snapshot& snapshot);
  void SendLocked(cache::ResourceType type, Response response);
  void FinishLocked(const grpc::Status& status);

  AdsServer& server_;
  grpc::CallbackServerContext* context_;
  Request request_;

  mutable std::mutex mu_;
  StreamStatus status_;
  bool has_proxy_ = false;
  std::array<TypeState, cache::kResourceTypeCount> types_;
  cache::SnapshotPtr snapshot_;  // the last good snapshot for this proxy
  std::deque<Response> outbox_;
  bool writing_ = false;
  bool finished_ = false;
  uint64_t next_nonce_ = 0;
};

}  // namespace meshpilot::xds
