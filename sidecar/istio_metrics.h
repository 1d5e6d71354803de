#pragma once

// Istio's standard request metric, istio_requests_total, kept per cluster as meshproxy's
// equivalent of Istio's stats filter. The labels that vary per request (reporter, protocol,
// response code, gRPC status) index a fixed open-addressing table of atomics, so the data path
// takes no lock and the label sets of a cluster stay bounded; the rest (workloads, the
// destination service from the cluster's name) are filled in when Prometheus scrapes
// (StatsStore::RenderPrometheus).

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace meshpilot::sidecar {

// The proxy's own workload, from its node metadata.
struct WorkloadIdentity {
  std::string name = "unknown";       // LABELS.app, else NAME
  std::string namespace_ = "unknown";  // NAMESPACE
};

class IstioRequestCounts {
 public:
  // One finished request. `inbound`: reported by the destination (an INBOUND listener), else by
  // the source. `grpc_status` only for gRPC requests.
  void Count(bool inbound, bool grpc, unsigned response_code, std::optional<uint32_t> grpc_status);

  struct Sample {
    bool inbound;
    bool grpc;
    unsigned response_code;
    std::optional<uint32_t> grpc_status;
    uint64_t count;
  };
  // One per label set seen.
  std::vector<Sample> Samples() const;

  // Requests whose label set did not fit in the table (more than kSlots distinct ones).
  uint64_t untracked() const { return untracked_.load(std::memory_order_relaxed); }

  static constexpr size_t kSlots = 128;

 private:
  struct Slot {
    std::atomic<uint32_t> key{0};  // 0: free
    std::atomic<uint64_t> count{0};
  };
  std::array<Slot, kSlots> slots_;
  std::atomic<uint64_t> untracked_{0};
};

// The destination service of a cluster named outbound|PORT|SUBSET|FQDN (or inbound|...): its FQDN,
// its short name and its namespace (the FQDN's first two labels). Other clusters (PassthroughCluster,
// BlackHoleCluster, ...) are their own name in an unknown namespace, as in Istio.
struct DestinationService {
  std::string service;
  std::string name;
  std::string namespace_;
};
DestinationService DestinationOfCluster(const std::string& cluster);

}  // namespace meshpilot::sidecar
