#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "controlplane/cache/snapshot.h"

namespace meshpilot::xds {

// What a proxy that rejects its newer listeners or routes keeps running on: which of LDS and
// RDS it rejected (and why), and the clusters and endpoints its last good listeners and
// routes name that the state no longer has.
struct RejectedRoutes {
  std::array<bool, cache::kResourceTypeCount> rejected{};
  std::array<std::string, cache::kResourceTypeCount> nacked_version;
  std::array<std::string, cache::kResourceTypeCount> nack_error;
  std::array<cache::ResourceMap, cache::kResourceTypeCount> held;  // kCluster, kEndpoint

  bool operator==(const RejectedRoutes&) const = default;
};

// Per node id, the RejectedRoutes of its stream, kept for a while after the stream ends, so
// that a proxy reconnecting while it still runs routes it had to keep (it will reject the
// same new ones again) does not lose the clusters they name to its new stream's first CDS.
//
// A node's entry belongs to one stream (its newest): only that stream updates it. When the
// stream ends, the entry is kept for `keep_for`; a new stream of the node adopts it. Entries
// of ended streams are at most `capacity` (the oldest go first); live ones are bounded by the
// streams. Thread-safe; a leaf lock (it never calls out).
class RejectionMemory {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr Clock::duration kDefaultKeepFor = std::chrono::minutes(5);
  static constexpr size_t kDefaultCapacity = 1024;

  explicit RejectionMemory(Clock::duration keep_for = kDefaultKeepFor,
                           size_t capacity = kDefaultCapacity)
      : keep_for_(keep_for), capacity_(capacity) {}

  // `connection` of `node` now rejects `routes` (nullopt: nothing). Ignored when another
  // stream of the node owns the entry.
  void Update(const std::string& node, const std::string& connection,
              std::optional<RejectedRoutes> routes);
  // A new stream of `node`: it owns the node's entry from now on and starts from what it
  // says (nullopt when there is none or it expired).
  std::optional<RejectedRoutes> Adopt(const std::string& node, const std::string& connection,
                                      Clock::time_point now);
  // `connection` ended: the entry it owns is kept until `now` + keep_for.
  void Release(const std::string& node, const std::string& connection, Clock::time_point now);

  size_t size() const;

 private:
  struct Entry {
    RejectedRoutes routes;
    std::string owner;                          // connection id; "" once it ended
    std::optional<Clock::time_point> expires;   // set when the owner ended
  };
  void EvictLocked(Clock::time_point now);

  const Clock::duration keep_for_;
  const size_t capacity_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
};

}  // namespace meshpilot::xds
