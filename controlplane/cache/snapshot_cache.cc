#include "controlplane/cache/snapshot_cache.h"

#include "translator/translate.h"

namespace meshpilot::cache {

void SnapshotCache::SetState(model::MeshStatePtr state) {
  std::vector<model::ConfigError> warnings =
      state == nullptr ? std::vector<model::ConfigError>{} : translator::CheckConfig(*state);
  std::lock_guard lock(mu_);
  state_ = std::move(state);
  warnings_ = std::move(warnings);
  by_key_.clear();
}

std::vector<model::ConfigError> SnapshotCache::warnings() const {
  std::lock_guard lock(mu_);
  return warnings_;
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
