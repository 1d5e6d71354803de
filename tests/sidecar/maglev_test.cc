// The Maglev table: every slot taken, shares that follow the weights, little movement when a
// host leaves, and a table that does not depend on the order the hosts came in.

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sidecar/upstream/load_balancer.h"
#include "sidecar/upstream/maglev.h"

namespace meshpilot::sidecar {
namespace {

using upstream::BuildMaglevTable;
using upstream::Host;
using upstream::MaglevHost;

constexpr uint64_t kSize = 65537;  // Envoy's default table size

struct Hosts {
  explicit Hosts(const std::vector<double>& weights) {
    for (size_t i = 0; i < weights.size(); ++i) {
      hosts.push_back(std::make_unique<Host>());
      entries.push_back({hosts.back().get(), "10.0.0." + std::to_string(i + 1) + ":8080",
                         weights[i]});
    }
  }
  std::map<const Host*, uint64_t> Shares(const std::vector<const Host*>& table) const {
    std::map<const Host*, uint64_t> shares;
    for (const Host* host : table) ++shares[host];
    return shares;
  }
  std::vector<std::unique_ptr<Host>> hosts;
  std::vector<MaglevHost> entries;
};

TEST_CASE("maglev: every slot is taken and equal hosts get equal shares") {
  Hosts h(std::vector<double>(7, 1.0));
  std::vector<const Host*> table = BuildMaglevTable(h.entries, kSize);
  REQUIRE(table.size() == kSize);
  CHECK(std::count(table.begin(), table.end(), nullptr) == 0);
  for (const auto& [host, count] : h.Shares(table)) {
    // Turn by turn: no host gets more than one slot more than another.
    CHECK(count >= kSize / 7);
    CHECK(count <= kSize / 7 + 1);
  }
}

TEST_CASE("maglev: shares follow the weights") {
  Hosts h({1, 2, 3, 0.5});
  std::map<const Host*, uint64_t> shares = h.Shares(BuildMaglevTable(h.entries, kSize));
  const double total = 6.5;
  for (const MaglevHost& entry : h.entries) {
    const double expected = kSize * entry.weight / total;
    CHECK(static_cast<double>(shares[entry.host]) == Approx(expected).epsilon(0.01));
  }
}

TEST_CASE("maglev: a host leaving moves few of the other hosts' slots") {
  Hosts h(std::vector<double>(10, 1.0));
  std::vector<const Host*> before = BuildMaglevTable(h.entries, kSize);
  const Host* gone = h.entries[3].host;
  std::vector<MaglevHost> rest = h.entries;
  rest.erase(rest.begin() + 3);
  std::vector<const Host*> after = BuildMaglevTable(rest, kSize);
  CHECK(std::count(after.begin(), after.end(), gone) == 0);
  uint64_t kept = 0, moved = 0;
  for (uint64_t slot = 0; slot < kSize; ++slot) {
    if (before[slot] == gone) continue;
    (before[slot] == after[slot] ? kept : moved)++;
  }
  // The paper measures a few percent; a ring of the same size moves none, a modulo most.
  INFO("moved " << moved << " of " << kept + moved);
  CHECK(moved < (kept + moved) / 20);
}

TEST_CASE("maglev: the table does not depend on the order of the hosts") {
  Hosts h({1, 1, 2, 1, 3});
  std::vector<MaglevHost> reversed(h.entries.rbegin(), h.entries.rend());
  CHECK(BuildMaglevTable(h.entries, 251) == BuildMaglevTable(reversed, 251));
}

TEST_CASE("maglev: no hosts, or none with weight, make no table") {
  CHECK(BuildMaglevTable({}, kSize).empty());
  Hosts h({0, 0});
  CHECK(BuildMaglevTable(h.entries, kSize).empty());
  Hosts one({0, 1});
  std::vector<const Host*> table = BuildMaglevTable(one.entries, 13);
  CHECK(std::count(table.begin(), table.end(), one.entries[1].host) == 13);
}

}  // namespace
}  // namespace meshpilot::sidecar
