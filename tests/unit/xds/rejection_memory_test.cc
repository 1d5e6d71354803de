// RejectionMemory: who owns a node's entry, how long it outlives its stream, how many are kept.

#include <catch2/catch.hpp>

#include <string>

#include "controlplane/xds/rejection_memory.h"

namespace meshpilot::xds {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;
using Clock = RejectionMemory::Clock;

RejectedRoutes RoutesRejecting(const std::string& error) {
  RejectedRoutes routes;
  size_t rds = static_cast<size_t>(cache::ResourceType::kRoute);
  routes.rejected[rds] = true;
  routes.nack_error[rds] = error;
  return routes;
}

const std::string& ErrorOf(const RejectedRoutes& routes) {
  return routes.nack_error[static_cast<size_t>(cache::ResourceType::kRoute)];
}

}  // namespace

TEST_CASE("rejection memory: a new stream of the node adopts what its ended stream rejected") {
  RejectionMemory memory(minutes(5), 10);
  Clock::time_point t0 = Clock::now();
  CHECK_FALSE(memory.Adopt("node-a", "node-a-1", t0));

  memory.Update("node-a", "node-a-1", RoutesRejecting("bad route"));
  memory.Release("node-a", "node-a-1", t0);
  std::optional<RejectedRoutes> adopted = memory.Adopt("node-a", "node-a-2", t0 + minutes(4));
  REQUIRE(adopted);
  CHECK(ErrorOf(*adopted) == "bad route");
  CHECK_FALSE(memory.Adopt("node-b", "node-b-3", t0));

  // The new stream owns the entry: while it lives, it does not expire...
  CHECK(memory.Adopt("node-a", "node-a-4", t0 + minutes(60)));
  // ...and an ACK on it (nothing rejected any more) forgets it.
  memory.Update("node-a", "node-a-4", std::nullopt);
  CHECK(memory.size() == 0);
}

TEST_CASE("rejection memory: an entry is kept for keep_for after its stream ends") {
  RejectionMemory memory(minutes(5), 10);
  Clock::time_point t0 = Clock::now();
  memory.Update("node-a", "node-a-1", RoutesRejecting("bad route"));
  memory.Release("node-a", "node-a-1", t0);
  CHECK_FALSE(memory.Adopt("node-a", "node-a-2", t0 + minutes(5)));
  CHECK(memory.size() == 0);
}

TEST_CASE("rejection memory: only the stream that owns the entry changes it") {
  RejectionMemory memory(minutes(5), 10);
  Clock::time_point t0 = Clock::now();
  memory.Update("node-a", "node-a-1", RoutesRejecting("old"));
  // The proxy reconnected before its old stream was noticed dead: the new one takes over.
  REQUIRE(memory.Adopt("node-a", "node-a-2", t0));
  memory.Update("node-a", "node-a-1", std::nullopt);           // ignored
  memory.Release("node-a", "node-a-1", t0);                    // ignored
  memory.Update("node-a", "node-a-2", RoutesRejecting("new"));
  memory.Release("node-a", "node-a-2", t0);
  std::optional<RejectedRoutes> adopted = memory.Adopt("node-a", "node-a-3", t0 + minutes(1));
  REQUIRE(adopted);
  CHECK(ErrorOf(*adopted) == "new");
}

TEST_CASE("rejection memory: at most capacity entries of ended streams, the oldest go first") {
  RejectionMemory memory(minutes(5), 2);
  Clock::time_point t0 = Clock::now();
  for (int i = 0; i < 4; ++i) {
    std::string node = "node-" + std::to_string(i);
    memory.Update(node, node + "-1", RoutesRejecting(node));
    memory.Release(node, node + "-1", t0 + seconds(i));
  }
  CHECK(memory.size() == 2);
  CHECK_FALSE(memory.Adopt("node-0", "node-0-2", t0 + seconds(10)));
  CHECK_FALSE(memory.Adopt("node-1", "node-1-2", t0 + seconds(10)));
  CHECK(memory.Adopt("node-3", "node-3-2", t0 + seconds(10)));
  // Entries of live streams are not evicted: they are bounded by the streams themselves.
  memory.Update("live", "live-1", RoutesRejecting("live"));
  memory.Update("node-4", "node-4-1", RoutesRejecting("node-4"));
  memory.Release("node-4", "node-4-1", t0 + seconds(11));
  memory.Update("node-5", "node-5-1", RoutesRejecting("node-5"));
  memory.Release("node-5", "node-5-1", t0 + seconds(12));
  CHECK(memory.Adopt("live", "live-2", t0 + seconds(13)));
}

}  // namespace meshpilot::xds
