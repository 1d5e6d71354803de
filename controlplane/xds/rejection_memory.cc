#include "controlplane/xds/rejection_memory.h"

#include <algorithm>

namespace meshpilot::xds {

void RejectionMemory::Update(const std::string& node, const std::string& connection,
                             std::optional<RejectedRoutes> routes) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(node);
  if (it != entries_.end() && it->second.owner != connection) return;
  if (!routes) {
    if (it != entries_.end()) entries_.erase(it);
    return;
  }
  if (it == entries_.end()) {
    entries_.emplace(node, Entry{.routes = *std::move(routes), .owner = connection, .expires = std::nullopt});
  } else {
    it->second.routes = *std::move(routes);
  }
}

std::optional<RejectedRoutes> RejectionMemory::Adopt(const std::string& node,
                                                     const std::string& connection,
                                                     Clock::time_point now) {
  std::lock_guard lock(mu_);
  EvictLocked(now);
  auto it = entries_.find(node);
  if (it == entries_.end()) return std::nullopt;
  // The previous stream may not have ended yet (a dead connection is noticed late): the new
  // one takes over either way.
  it->second.owner = connection;
  it->second.expires.reset();
  return it->second.routes;
}

void RejectionMemory::Release(const std::string& node, const std::string& connection,
                              Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(node);
  if (it == entries_.end() || it->second.owner != connection) return;
  it->second.owner.clear();
  it->second.expires = now + keep_for_;
  EvictLocked(now);
}

size_t RejectionMemory::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

void RejectionMemory::EvictLocked(Clock::time_point now) {
  std::erase_if(entries_, [&](const auto& entry) {
    return entry.second.expires && *entry.second.expires <= now;
  });
  size_t ended = std::count_if(entries_.begin(), entries_.end(),
                               [](const auto& entry) { return entry.second.expires.has_value(); });
  while (ended > capacity_) {
    auto oldest = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.expires && (oldest == entries_.end() || *it->second.expires < *oldest->second.expires)) {
        oldest = it;
      }
    }
    entries_.erase(oldest);
    --ended;
  }
}

}  // namespace meshpilot::xds
