#include "controlplane/cache/snapshot_cache.h"

#include "translator/translate.h"

namespace meshpilot::cache {

void SnapshotCache::SetState(model::MeshStatePtr state) {
  std::vector<model::ConfigError> warnings;
  std::set<std::string> label_keys;
  if (state != nullptr) {
    warnings = translator::CheckConfig(*state);
    label_keys = translator::OutboundLabelKeys(*state);
  }
  std::lock_guard lock(mu_);
  state_ = std::move(state);
  warnings_ = std::move(warnings);
  outbound_label_keys_ = std::move(label_keys);
  outbound_.clear();
  by_key_.clear();
}

model::MeshStatePtr SnapshotCache::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

std::vector<model::ConfigError> SnapshotCache::warnings() const {
  std::lock_guard lock(mu_);
  return warnings_;
}

absl::StatusOr<SnapshotPtr> SnapshotCache::SnapshotFor(const translator::ProxyInfo& proxy) {
  std::lock_guard lock(mu_);
  if (state_ == nullptr) return absl::FailedPreconditionError("config sources have not synced");
  std::string key = proxy.TranslationKey();
  if (auto it = by_key_.find(key); it != by_key_.end()) return it->second;

  std::string outbound_key = translator::OutboundKey(proxy, outbound_label_keys_);
  std::shared_ptr<const ResourceSet>& outbound = outbound_[outbound_key];
  if (outbound == nullptr) {
    absl::StatusOr<ResourceSet> set =
        ResourceSet::Serialize(translator::TranslateOutbound(*state_, proxy));
    if (!set.ok()) {
      outbound_.erase(outbound_key);
      return set.status();
    }
    outbound = std::make_shared<const ResourceSet>(*std::move(set));
  }
  absl::StatusOr<ResourceSet> workload =
      ResourceSet::Serialize(translator::TranslateWorkload(*state_, proxy));
  if (!workload.ok()) return workload.status();
  absl::StatusOr<SnapshotPtr> snapshot =
      Snapshot::Build({outbound.get(), &*workload}, state_->version);
  if (snapshot.ok()) by_key_[key] = *snapshot;
  return snapshot;
}

}  // namespace meshpilot::cache
