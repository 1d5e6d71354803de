#pragma once

// Istio's HTTP metadata exchange: which workload is on the other side of a request, for the
// source_* / destination_* labels of Istio's metrics. As Istio's sidecars (the
// istio.metadata_exchange filter, io.istio.http.peer_metadata.Config with istio_headers): the
// client side adds `x-envoy-peer-metadata-id` (its node id) and `x-envoy-peer-metadata`
// (base64 of a serialized google.protobuf.Struct of its node metadata: NAME, NAMESPACE,
// WORKLOAD_NAME, CLUSTER_ID, LABELS with app, version and the canonical service labels) to
// the requests it sends; the server side reads and strips them and answers with its own pair,
// which the client side reads and strips. The headers only ever label metrics: nothing is
// trusted or authorized by them, and a pair that does not decode leaves the peer unknown.

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "envoy/config/core/v3/base.pb.h"
#include "google/protobuf/struct.pb.h"

namespace meshpilot::sidecar {

inline constexpr std::string_view kPeerMetadataIdHeader = "x-envoy-peer-metadata-id";
inline constexpr std::string_view kPeerMetadataHeader = "x-envoy-peer-metadata";

// One side's workload as Istio's metrics label it; fields a peer did not send are "unknown"
// (the canonical revision "latest"), as Istio's stats filter reports them.
struct WorkloadLabels {
  std::string workload = "unknown";           // WORKLOAD_NAME
  std::string namespace_ = "unknown";         // NAMESPACE
  std::string app = "unknown";                // LABELS.app
  std::string version = "unknown";            // LABELS.version
  std::string canonical_service = "unknown";  // LABELS["service.istio.io/canonical-name"]
  std::string canonical_revision = "latest";  // LABELS["service.istio.io/canonical-revision"]
  std::string cluster = "unknown";            // CLUSTER_ID

  bool operator==(const WorkloadLabels&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const WorkloadLabels& w) {
    return H::combine(std::move(h), w.workload, w.namespace_, w.app, w.version,
                      w.canonical_service, w.canonical_revision, w.cluster);
  }
};

// The labels of node metadata (a node's own, or a peer's decoded Struct).
WorkloadLabels WorkloadLabelsOf(const google::protobuf::Struct& metadata);

// The x-envoy-peer-metadata value of a node: the exchanged fields of its metadata, serialized
// deterministically, base64 with padding.
std::string EncodePeerMetadata(const google::protobuf::Struct& node_metadata);

// The peer's labels from an x-envoy-peer-metadata value (padded or not); nullopt when it is
// not base64 of a Struct.
std::optional<WorkloadLabels> DecodePeerMetadata(std::string_view header);

// The peers met so far, each under a small index that metric tables key on (0: unknown), and
// this proxy's own header pair. Process-wide (Peers()); a worker finds a header it has seen
// before in its own thread-local cache, so the data path takes the mutex only for a new peer.
class PeerDirectory {
 public:
  static constexpr uint16_t kUnknown = 0;
  static constexpr size_t kMaxPeers = 1024;  // later peers are unknown

  PeerDirectory();

  // Set once before the workers start.
  void SetLocal(const envoy::config::core::v3::Node& node);
  const std::string& local_id() const { return local_id_; }
  const std::string& local_metadata() const { return local_metadata_; }
  const WorkloadLabels& local() const { return local_; }

  // The index of the peer an x-envoy-peer-metadata value describes (kUnknown if it does not
  // decode or the directory is full).
  uint16_t Find(std::string_view header);
  // The labels of an index Find returned.
  WorkloadLabels Labels(uint16_t index) const;

 private:
  uint64_t generation_;  // tells this directory's thread-local cache entries from others'
  std::string local_id_;
  std::string local_metadata_;
  WorkloadLabels local_;
  mutable std::mutex mu_;
  std::deque<WorkloadLabels> peers_;  // by index; [0] unknown
  absl::flat_hash_map<WorkloadLabels, uint16_t> index_of_;
};

PeerDirectory& Peers();

}  // namespace meshpilot::sidecar
