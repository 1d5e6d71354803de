#pragma once

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/cache/snapshot.h"
#include "controlplane/model/mesh_state.h"
#include "translator/proxy.h"

namespace meshpilot::cache {

// What each proxy should have. Holds the current MeshState and, for it, each proxy's
// snapshot, built from two parts: the outbound part, translated and serialized once per
// translator::OutboundKey and shared by every proxy of that class, and the small workload part
// (inbound listeners and clusters) of the proxy itself. Knows nothing of streams (that is the
// xDS server's business).
class SnapshotCache {
 public:
  // Installs a new state; snapshots of the previous state are dropped.
  void SetState(model::MeshStatePtr state);
  // nullptr until the first state: the sources have not synced yet.
  model::MeshStatePtr state() const;
  // What translation of the current state warns about (translator::CheckConfig).
  std::vector<model::ConfigError> warnings() const;

  // The snapshot for `proxy` at the current state. FailedPrecondition before the first state.
  absl::StatusOr<SnapshotPtr> SnapshotFor(const translator::ProxyInfo& proxy);

 private:
  mutable std::mutex mu_;
  model::MeshStatePtr state_;
  std::vector<model::ConfigError> warnings_;
  std::set<std::string> outbound_label_keys_;
  std::map<std::string, std::shared_ptr<const ResourceSet>> outbound_;  // by OutboundKey
  std::map<std::string, SnapshotPtr> by_key_;                          // by TranslationKey
};

}  // namespace meshpilot::cache
