#include "sidecar/istio_peer.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <atomic>

#include "absl/strings/escaping.h"

namespace meshpilot::sidecar {
namespace {

constexpr char kCanonicalName[] = "service.istio.io/canonical-name";
constexpr char kCanonicalRevision[] = "service.istio.io/canonical-revision";
// A header past this is not decoded (Istio's node metadata is a few hundred bytes).
constexpr size_t kMaxHeaderSize = 8192;
// Each worker remembers this many header values before it starts afresh.
constexpr size_t kCacheSize = 256;

const google::protobuf::Value* Field(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? nullptr : &it->second;
}

void Take(const google::protobuf::Struct& s, const std::string& key, std::string& out) {
  const google::protobuf::Value* v = Field(s, key);
  if (v != nullptr && v->has_string_value() && !v->string_value().empty()) {
    out = v->string_value();
  }
}

}  // namespace

WorkloadLabels WorkloadLabelsOf(const google::protobuf::Struct& metadata) {
  WorkloadLabels w;
  Take(metadata, "WORKLOAD_NAME", w.workload);
  Take(metadata, "NAMESPACE", w.namespace_);
  Take(metadata, "CLUSTER_ID", w.cluster);
  if (const google::protobuf::Value* labels = Field(metadata, "LABELS");
      labels != nullptr && labels->has_struct_value()) {
    const google::protobuf::Struct& l = labels->struct_value();
    Take(l, "app", w.app);
    Take(l, "version", w.version);
    Take(l, kCanonicalName, w.canonical_service);
    Take(l, kCanonicalRevision, w.canonical_revision);
  }
  return w;
}

std::string EncodePeerMetadata(const google::protobuf::Struct& node_metadata) {
  // What Istio's proxies exchange: the workload's identity, not all of its metadata.
  google::protobuf::Struct out;
  auto& fields = *out.mutable_fields();
  for (const char* key : {"NAME", "NAMESPACE", "WORKLOAD_NAME", "CLUSTER_ID"}) {
    if (const google::protobuf::Value* v = Field(node_metadata, key); v != nullptr) fields[key] = *v;
  }
  auto& labels = *fields["LABELS"].mutable_struct_value()->mutable_fields();
  if (const google::protobuf::Value* l = Field(node_metadata, "LABELS");
      l != nullptr && l->has_struct_value()) {
    for (const char* key : {kCanonicalName, kCanonicalRevision, "app", "version"}) {
      if (const google::protobuf::Value* v = Field(l->struct_value(), key); v != nullptr) {
        labels[key] = *v;
      }
    }
  }
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    out.SerializeToCodedStream(&coded);
  }
  std::string encoded;
  absl::Base64Escape(bytes, &encoded);
  return encoded;
}

std::optional<WorkloadLabels> DecodePeerMetadata(std::string_view header) {
  std::string bytes;
  google::protobuf::Struct metadata;
  if (header.empty() || header.size() > kMaxHeaderSize ||
      !absl::Base64Unescape(absl::string_view(header.data(), header.size()), &bytes) ||
      !metadata.ParseFromString(bytes)) {
    return std::nullopt;
  }
  return WorkloadLabelsOf(metadata);
}

PeerDirectory::PeerDirectory() {
  static std::atomic<uint64_t> next_generation{1};
  generation_ = next_generation.fetch_add(1, std::memory_order_relaxed);
  peers_.emplace_back();
}

void PeerDirectory::SetLocal(const envoy::config::core::v3::Node& node) {
  local_id_ = node.id();
  local_metadata_ = EncodePeerMetadata(node.metadata());
  local_ = WorkloadLabelsOf(node.metadata());
}

uint16_t PeerDirectory::Find(std::string_view header) {
  // Per thread, per directory: a directory created later (even at the same address) starts
  // with an empty cache.
  thread_local uint64_t cached_generation = 0;
  thread_local absl::flat_hash_map<std::string, uint16_t> cache;
  if (cached_generation != generation_) {
    cache.clear();
    cached_generation = generation_;
  }
  const absl::string_view key(header.data(), header.size());
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  uint16_t index = kUnknown;
  if (std::optional<WorkloadLabels> labels = DecodePeerMetadata(header)) {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, added] = index_of_.try_emplace(*labels, static_cast<uint16_t>(peers_.size()));
    if (added && peers_.size() >= kMaxPeers) {
      index_of_.erase(it);
    } else {
      if (added) peers_.push_back(*std::move(labels));
      index = it->second;
    }
  }
  if (header.size() <= kMaxHeaderSize) {
    if (cache.size() >= kCacheSize) cache.clear();
    cache.emplace(key, index);
  }
  return index;
}

WorkloadLabels PeerDirectory::Labels(uint16_t index) const {
  std::lock_guard<std::mutex> lock(mu_);
  return index < peers_.size() ? peers_[index] : peers_[kUnknown];
}

PeerDirectory& Peers() {
  static PeerDirectory* directory = new PeerDirectory();
  return *directory;
}

}  // namespace meshpilot::sidecar
