#include "controlplane/cache/snapshot_cache.h"

#include "translator/translate.h"

namespace meshpilot::cache {

void SnapshotCache::SetState(model::MeshStatePtr state) {
  std::lock_guard lock(mu_);
  state_ = std::move(state);
  by_key_.clear();
}

model::MeshStatePtr SnapshotCache::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

absl::StatusOr<SnapshotPtr> SnapshotCache::SnapshotFor(const translator::ProxyInfo& proxy) {
  std::lock_guard lock(mu_);
  if (state_ == nullptr) return absl::FailedPreconditionError("config sources have not synced");
  std::string key = proxy.TranslationKey();
  if (auto it = by_key_.find(key); it != by_key_.end()) return it->second;
  absl::StatusOr<SnapshotPtr> snapshot =
      Snapshot::Build(translator::Translate(*state_, proxy), state_->version);
  if (snapshot.ok()) by_key_[key] = *snapshot;
  return snapshot;
}

}  // namespace meshpilot::cache
