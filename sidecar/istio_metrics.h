#pragma once

// Istio's standard metrics (istio_requests_total, istio_request_duration_milliseconds,
// istio_request_bytes, istio_response_bytes, istio_request_messages_total,
// istio_response_messages_total, istio_tcp_*), kept per cluster as meshproxy's equivalent of
// Istio's stats filter. The labels that vary per request (peer, reporter, protocol, response
// code, gRPC status, response flags) index a fixed open-addressing table of series allocated on
// first use, so the data path takes no lock and does no lookup by label strings, and the label
// sets of a cluster stay bounded; the rest (this workload, the peer's labels, the destination
// service from the cluster's name) are spelled out only when Prometheus scrapes.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sidecar/istio_peer.h"

namespace meshpilot::sidecar {

// The Envoy response flags meshproxy sets, as bits in Envoy's order of them (which is the
// order of their short names in the response_flags label, comma-separated; "-" for none).
enum ResponseFlag : uint16_t {
  kNoHealthyUpstream = 1 << 0,                 // UH
  kUpstreamRequestTimeout = 1 << 1,            // UT
  kUpstreamConnectionFailure = 1 << 2,         // UF
  kUpstreamConnectionTermination = 1 << 3,     // UC
  kUpstreamOverflow = 1 << 4,                  // UO
  kNoRouteFound = 1 << 5,                      // NR
  kDelayInjected = 1 << 6,                     // DI
  kFaultInjected = 1 << 7,                     // FI
  kDownstreamConnectionTermination = 1 << 8,   // DC
  kDurationTimeout = 1 << 9,                   // DT
  kNoClusterFound = 1 << 10,                   // NC
};
std::string ResponseFlagsString(uint16_t flags);

// Envoy's default histogram buckets, which Istio's three histograms use.
inline constexpr std::array<double, 19> kHistogramBounds = {
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
    1800000, 3600000};

class Histogram {
 public:
  void Record(uint64_t value);
  // Per bucket (not cumulative; the last one is +Inf), and the sum of the values recorded.
  std::array<uint64_t, kHistogramBounds.size() + 1> Buckets() const;
  uint64_t sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<uint64_t>, kHistogramBounds.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_{0};
};

// One finished HTTP request as Istio's metrics see it.
struct IstioRequest {
  uint16_t peer = PeerDirectory::kUnknown;  // the other side, from the metadata exchange
  bool inbound = false;  // reported by the destination (an INBOUND listener), else the source
  bool grpc = false;
  unsigned response_code = 0;
  std::optional<uint32_t> grpc_status;  // gRPC requests only
  uint16_t response_flags = 0;
  uint64_t duration_ms = 0;
  uint64_t request_bytes = 0;  // bodies
  uint64_t response_bytes = 0;
  uint64_t request_messages = 0;  // gRPC messages
  uint64_t response_messages = 0;
};

// Counts the gRPC messages (each a 5-byte prefix: flags, then a big-endian length) of a stream
// fed in pieces as they go by; it looks only at the prefixes.
class GrpcMessageCounter {
 public:
  void Feed(std::string_view data);
  uint64_t messages() const { return messages_; }

 private:
  uint64_t messages_ = 0;
  uint64_t body_left_ = 0;  // of the current message
  std::array<uint8_t, 5> prefix_{};
  size_t prefix_size_ = 0;
};

// What the series of one label set hold.
struct IstioRequestSeries {
  explicit IstioRequestSeries(uint64_t key) : key(key) {}
  const uint64_t key;
  std::atomic<uint64_t> requests{0};
  Histogram duration_ms;
  Histogram request_bytes;
  Histogram response_bytes;
  std::atomic<uint64_t> request_messages{0};
  std::atomic<uint64_t> response_messages{0};
};

class IstioRequestTable {
 public:
  IstioRequestTable() = default;
  ~IstioRequestTable();
  IstioRequestTable(const IstioRequestTable&) = delete;
  IstioRequestTable& operator=(const IstioRequestTable&) = delete;

  void Record(const IstioRequest& request);

  struct LabelSet {
    uint16_t peer;
    bool inbound;
    bool grpc;
    unsigned response_code;
    std::optional<uint32_t> grpc_status;
    uint16_t response_flags;
  };
  // Each label set seen, with its series.
  void ForEach(const std::function<void(const LabelSet&, const IstioRequestSeries&)>& fn) const;

  // Requests whose label set did not fit in the table (more than kSlots distinct ones).
  uint64_t untracked() const { return untracked_.load(std::memory_order_relaxed); }

  static constexpr size_t kSlots = 256;

 private:
  std::array<std::atomic<IstioRequestSeries*>, kSlots> slots_{};
  std::atomic<uint64_t> untracked_{0};
};

// TCP connections of a cluster as Istio's tcp metrics count them. The peer of a TCP connection
// is unknown (Istio learns it through mTLS ALPN, which meshproxy does not speak).
struct IstioTcpCounters {
  std::atomic<uint64_t> opened{0};
  std::atomic<uint64_t> closed{0};
  std::atomic<uint64_t> sent_bytes{0};      // to the downstream
  std::atomic<uint64_t> received_bytes{0};  // from the downstream
};
class IstioTcpTable {
 public:
  // A connection that was proxied (flags 0) or failed with one of UF, UH, UO.
  IstioTcpCounters& For(bool inbound, uint16_t response_flags);
  void ForEach(const std::function<void(bool inbound, uint16_t response_flags,
                                        const IstioTcpCounters&)>& fn) const;

 private:
  static constexpr std::array<uint16_t, 4> kFlags = {0, kUpstreamConnectionFailure,
                                                     kNoHealthyUpstream, kUpstreamOverflow};
  std::array<IstioTcpCounters, 2 * kFlags.size()> counters_;  // [inbound][flags]
};

// The destination service of a cluster named outbound|PORT|SUBSET|FQDN (or inbound|...): its FQDN,
// its short name and its namespace (the FQDN's first two labels). Other clusters (PassthroughCluster,
// BlackHoleCluster, inbound|PORT||, ...) are not known by name (`known` false).
struct DestinationService {
  std::string service;
  std::string name;
  std::string namespace_;
  bool known = false;
};
DestinationService DestinationOfCluster(const std::string& cluster);

// The tables of one cluster (or, without a cluster, of requests no route or cluster took).
struct IstioScrape {
  std::string cluster;  // empty: no cluster
  const IstioRequestTable* requests = nullptr;
  const IstioTcpTable* tcp = nullptr;
};

// Istio's metrics in Prometheus text, labelled as Istio's stats filter labels them, with
// `local` as this proxy's workload and peers' labels from `peers`.
void RenderIstioPrometheus(const std::vector<IstioScrape>& scrapes, const WorkloadLabels& local,
                           const PeerDirectory& peers, std::string& out);
// The same counters in Envoy's /stats form (istiocustom.istio_requests_total.reporter.X....).
void RenderIstioText(const std::vector<IstioScrape>& scrapes, const WorkloadLabels& local,
                     const PeerDirectory& peers, std::string& out);

}  // namespace meshpilot::sidecar
