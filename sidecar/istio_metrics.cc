#include "sidecar/istio_metrics.h"

#include <vector>

#include "absl/strings/str_split.h"

namespace meshpilot::sidecar {
namespace {

// key = 1 (used) | inbound | grpc | grpc status + 1 (5 bits, 0: none) | response code (10 bits)
constexpr uint32_t kUsed = 1u << 31;
constexpr uint32_t kInbound = 1u << 30;
constexpr uint32_t kGrpc = 1u << 29;

uint32_t Key(bool inbound, bool grpc, unsigned code, std::optional<uint32_t> grpc_status) {
  // gRPC defines codes 0..16; anything else is reported as UNKNOWN (2).
  const uint32_t status = grpc_status ? (*grpc_status <= 16 ? *grpc_status : 2) + 1 : 0;
  return kUsed | (inbound ? kInbound : 0) | (grpc ? kGrpc : 0) | (status << 16) |
         (code < 1000 ? code : 0);
}

}  // namespace

void IstioRequestCounts::Count(bool inbound, bool grpc, unsigned response_code,
                               std::optional<uint32_t> grpc_status) {
  const uint32_t key = Key(inbound, grpc, response_code, grpc_status);
  const size_t start = (key * 2654435761u) % kSlots;
  for (size_t probe = 0; probe < kSlots; ++probe) {
    Slot& slot = slots_[(start + probe) % kSlots];
    uint32_t seen = slot.key.load(std::memory_order_acquire);
    if (seen == 0 && slot.key.compare_exchange_strong(seen, key, std::memory_order_acq_rel)) {
      seen = key;
    }
    if (seen == key) {
      slot.count.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  untracked_.fetch_add(1, std::memory_order_relaxed);
}

DestinationService DestinationOfCluster(const std::string& cluster) {
  std::vector<std::string> parts = absl::StrSplit(cluster, '|');
  if (parts.size() == 4 && (parts[0] == "outbound" || parts[0] == "inbound") &&
      !parts[3].empty()) {
    std::vector<std::string> labels = absl::StrSplit(parts[3], '.');
    return {parts[3], labels[0], labels.size() > 1 ? labels[1] : "unknown"};
  }
  return {cluster, cluster, "unknown"};
}

std::vector<IstioRequestCounts::Sample> IstioRequestCounts::Samples() const {
  std::vector<Sample> samples;
  for (const Slot& slot : slots_) {
    const uint32_t key = slot.key.load(std::memory_order_acquire);
    if (key == 0) continue;
    const uint32_t grpc_status = (key >> 16) & 0x1f;
    samples.push_back({(key & kInbound) != 0, (key & kGrpc) != 0, key & 0x3ff,
                       grpc_status == 0 ? std::nullopt : std::optional<uint32_t>(grpc_status - 1),
                       slot.count.load(std::memory_order_relaxed)});
  }
  return samples;
}

}  // namespace meshpilot::sidecar
