#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "controlplane/cache/snapshot.h"
#include "controlplane/xds/rejection_memory.h"
#include "controlplane/xds/stream_status.h"
#include "envoy/service/discovery/v3/ads.grpc.pb.h"

namespace meshpilot::xds {

class AdsServer;

// One ADS stream, whatever its protocol: who the proxy is, per type the subscription and
// where the request/response exchange stands (nonce in flight, ACKed and NACKed versions).
// AdsServer holds every stream by this interface.
class Stream {
 public:
  virtual ~Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // A new state was installed in the cache: send whatever changed for this proxy.
  virtual void Push() = 0;
  // Ends the stream from the server side (shutdown).
  virtual void Close(const grpc::Status& status) = 0;
  StreamStatus Status() const;
  bool HasProxy() const;

 protected:
  struct TypeState {
    TypeStatus status;
    bool awaiting_ack = false;
    // The last response was NACKed: the client kept what it had. A new stream starts so for
    // LDS/RDS when the node's previous stream ended that way (RejectionMemory).
    bool rejected = false;
    bool named = false;  // the client has named resources (even "*"): no legacy wildcard
    std::chrono::steady_clock::time_point sent_at;
    // LDS/RDS: the snapshots of the last response sent and of the last one ACKed. The
    // listeners and routes the client runs come from them (a NACKed response may have been
    // applied in part, as Envoy and gRPC apply the valid resources of a response they NACK),
    // and a snapshot is consistent: they name only its clusters and endpoints.
    cache::SnapshotPtr sent_basis;
    cache::SnapshotPtr acked_basis;
  };
  // What a request's response_nonce and error_detail say about the response in flight.
  enum class Answer { kNone, kStale, kAck, kNack };

  Stream(AdsServer& server, grpc::CallbackServerContext* context, Protocol protocol);

  // The first request's node: parsed into the proxy this stream serves.
  absl::Status IdentifyLocked(const envoy::config::core::v3::Node& node);
  // The type of `type_url`, or nullopt (logged) for a type meshpilot does not serve.
  std::optional<cache::ResourceType> TypeOfLocked(const std::string& type_url) const;
  // Matches `nonce` against the response in flight for `type` and records the ACK (the
  // client now holds `acked_version`) or the NACK (metrics, log, never resent).
  Answer AnswerLocked(cache::ResourceType type, const std::string& nonce,
                      const google::rpc::Status* error, const std::string& acked_version);
  // The newest snapshot for this proxy, else the last good one; nullptr before the first
  // state, when nothing may be sent.
  const cache::Snapshot* RefreshSnapshotLocked();
  // Nonce and bookkeeping of a response about to be written.
  std::string RecordSendLocked(cache::ResourceType type, const std::string& version);
  TypeState& type_state(cache::ResourceType type) { return types_[static_cast<size_t>(type)]; }

  AdsServer& server_;
  mutable std::mutex mu_;
  StreamStatus status_;
  bool has_proxy_ = false;
  bool finished_ = false;
  cache::SnapshotPtr snapshot_;  // the last good snapshot for this proxy
  // Per CDS/EDS: what the routes the proxy ran on its previous stream name, gone from the
  // state, while it rejected newer ones (RejectionMemory). Empty once it runs current routes.
  std::array<cache::ResourceMap, cache::kResourceTypeCount> inherited_;

 private:
  std::array<TypeState, cache::kResourceTypeCount> types_;
  uint64_t next_nonce_ = 0;
};

// The gRPC side shared by both protocols: reads, the push walk in push order (CDS, EDS,
// LDS, RDS) with its barrier, and the write queue. At most one response per type is
// un-ACKed at a time; newer state waits behind it and goes out, coalesced, when the client
// answers. Removed clusters and endpoints stay with the client until its listeners and
// routes have been replaced (make before break): only those its listeners and routes may
// name, so what is held is bounded by two snapshots per route type however long a client
// rejects. Writes are queued, so a slow client only ever slows itself. A protocol supplies
// what a request means and what a response holds.
template <typename Request, typename Response>
class StreamReactor : public Stream, public grpc::ServerBidiReactor<Request, Response> {
 public:
  void Push() override;
  void Close(const grpc::Status& status) override;

  // grpc::ServerBidiReactor
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;

 protected:
  using Stream::Stream;
  // Registers with the server and starts reading: the last statement of the most derived
  // constructor, since gRPC may call back on another thread from here on.
  void Start();

  // A request from a known proxy. Ends with PushLocked() when something may have changed.
  virtual void HandleRequestLocked(const Request& request) = 0;
  // The response for `type` when `available` is what the client should hold, or nullopt
  // when there is nothing new to send. Must not change what is sent or held: the push walk may
  // drop the response (barrier). It may clear `rejected` when the client already holds
  // `available` (delta: the rejected change was reverted or unsubscribed).
  virtual std::optional<Response> DiffLocked(cache::ResourceType type,
                                             const cache::ResourceMap& available) = 0;
  // `response` is on its way: protocol bookkeeping (what is in flight, EDS after CDS).
  virtual void SentLocked(cache::ResourceType type, const Response& response) = 0;

  void PushLocked();
  void FinishLocked(const grpc::Status& status);

 private:
  // What the client holds of a type whose removals wait for the routes (clusters and
  // endpoints): the snapshot it was last sent from, plus what was kept for it of resources
  // already gone from the state.
  struct Held {
    cache::SnapshotPtr basis;
    cache::ResourceMap kept;
  };

  // Diffs and sends `type` against `available` unless a response of the type is in flight;
  // false when the walk must stop there.
  bool PushTypeLocked(cache::ResourceType type, const cache::ResourceMap& available);
  // Where the client's holdings of `type` are tracked, or nullptr when its removals need not
  // wait.
  Held* HeldOf(cache::ResourceType type);
  // The resources the client holds of `type` that the current state no longer has and that
  // listeners or routes it runs, or may run, name.
  cache::ResourceMap RemovedLocked(cache::ResourceType type);
  // Neither LDS nor RDS is un-ACKed or rejected: the client runs the current ones.
  bool RoutesSettledLocked();
  // Publishes what is held (`removed`, per type) and rejected: the stream's status, the
  // gauge, and the node's entry in the server's RejectionMemory.
  void ReportLocked(const std::array<cache::ResourceMap, cache::kResourceTypeCount>& removed);
  void SendLocked(cache::ResourceType type, Response response);

  std::array<Held, 2> held_;  // kCluster, kEndpoint
  std::optional<RejectedRoutes> reported_routes_;  // last given to RejectionMemory
  bool routes_reported_ = false;
  Request request_;
  std::deque<Response> outbox_;
  bool writing_ = false;
};

// One state-of-the-world ADS stream (StreamAggregatedResources): each response holds every
// subscribed resource of its type, versioned as a whole.
class AdsStream final : public StreamReactor<envoy::service::discovery::v3::DiscoveryRequest,
                                             envoy::service::discovery::v3::DiscoveryResponse> {
 public:
  AdsStream(AdsServer& server, grpc::CallbackServerContext* context);

 private:
  void HandleRequestLocked(const envoy::service::discovery::v3::DiscoveryRequest& request) override;
  std::optional<envoy::service::discovery::v3::DiscoveryResponse> DiffLocked(
      cache::ResourceType type, const cache::ResourceMap& available) override;
  void SentLocked(cache::ResourceType type,
                  const envoy::service::discovery::v3::DiscoveryResponse& response) override;

  // Per type: send even if the version did not change.
  std::array<bool, cache::kResourceTypeCount> force_{};
};

}  // namespace meshpilot::xds
