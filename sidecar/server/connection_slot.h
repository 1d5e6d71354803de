#pragma once

// ConnectionSlot: an upstream connection's place under its cluster's max_connections.

#include <cstdint>
#include <memory>
#include <utility>

#include "sidecar/stats.h"

namespace meshpilot::sidecar::server {

// A connection's place under its cluster's max_connections circuit breaker, as Envoy's pools
// and TCP proxy take it: from the moment the connection is created, before it connects, it
// counts in upstream_cx_active (the breaker's count, across workers) and upstream_cx_total,
// and when it is given back (the connection closed, or failed to connect) in
// upstream_cx_destroy. Empty: no place held.
class ConnectionSlot {
 public:
  ConnectionSlot() = default;
  ~ConnectionSlot() { Release(); }
  ConnectionSlot(ConnectionSlot&& other) noexcept : stats_(std::move(other.stats_)) {}
  ConnectionSlot& operator=(ConnectionSlot&& other) noexcept {
    if (this != &other) {
      Release();
      stats_ = std::move(other.stats_);
    }
    return *this;
  }

  // A place if the cluster has one under `max_connections`, checked and taken in one step so
  // that two workers cannot both take the last one; empty if not (the caller counts
  // upstream_cx_overflow as it queues or refuses).
  static ConnectionSlot Claim(std::shared_ptr<ClusterStats> stats, uint32_t max_connections);
  // A place beyond the limit (a pool with no connection to the host opens one anyway),
  // counted in upstream_cx_overflow.
  static ConnectionSlot Force(std::shared_ptr<ClusterStats> stats);

  explicit operator bool() const { return stats_ != nullptr; }
  // Gives the place back; nothing if empty.
  void Release();

 private:
  explicit ConnectionSlot(std::shared_ptr<ClusterStats> stats) : stats_(std::move(stats)) {}
  std::shared_ptr<ClusterStats> stats_;
};

inline ConnectionSlot ConnectionSlot::Claim(std::shared_ptr<ClusterStats> stats,
                                            uint32_t max_connections) {
  if (stats->upstream_cx_active.fetch_add(1, std::memory_order_relaxed) >=
      static_cast<int64_t>(max_connections)) {
    stats->upstream_cx_active.fetch_sub(1, std::memory_order_relaxed);
    return ConnectionSlot();
  }
  stats->upstream_cx_total.fetch_add(1, std::memory_order_relaxed);
  return ConnectionSlot(std::move(stats));
}

inline ConnectionSlot ConnectionSlot::Force(std::shared_ptr<ClusterStats> stats) {
  stats->upstream_cx_overflow.fetch_add(1, std::memory_order_relaxed);
  stats->upstream_cx_active.fetch_add(1, std::memory_order_relaxed);
  stats->upstream_cx_total.fetch_add(1, std::memory_order_relaxed);
  return ConnectionSlot(std::move(stats));
}

inline void ConnectionSlot::Release() {
  if (stats_ == nullptr) return;
  stats_->upstream_cx_active.fetch_sub(1, std::memory_order_relaxed);
  stats_->upstream_cx_destroy.fetch_add(1, std::memory_order_relaxed);
  stats_.reset();
}

}  // namespace meshpilot::sidecar::server
