#include "sidecar/upstream/maglev.h"

#include <algorithm>
#include <string_view>

#include "sidecar/upstream/load_balancer.h"

namespace meshpilot::sidecar::upstream {

std::vector<const Host*> BuildMaglevTable(const std::vector<MaglevHost>& hosts,
                                          uint64_t table_size) {
  double max_weight = 0;
  for (const MaglevHost& host : hosts) max_weight = std::max(max_weight, host.weight);
  if (table_size < 2 || max_weight <= 0) return {};

  struct Builder {
    const Host* host;
    uint64_t offset;
    uint64_t skip;
    double weight;  // its share; the heaviest host takes a slot every turn
    std::string_view key;
    double target = 0;
    uint64_t next = 0;  // position in its permutation
  };
  std::vector<Builder> builders;
  for (const MaglevHost& host : hosts) {
    if (host.weight <= 0) continue;
    // Envoy's: offset and skip from xxHash64 of the key with seeds 0 and 1.
    builders.push_back({host.host, Hash64(host.key) % table_size,
                        Hash64(host.key, 1) % (table_size - 1) + 1, host.weight, host.key});
  }
  // Turns in key order: the same hosts give the same table whatever order EDS listed them in.
  std::sort(builders.begin(), builders.end(),
            [](const Builder& a, const Builder& b) { return a.key < b.key; });
  std::vector<const Host*> table(table_size, nullptr);
  uint64_t filled = 0;
  for (uint64_t turn = 1; filled < table_size; ++turn) {
    for (Builder& b : builders) {
      if (filled == table_size) break;
      // A host takes a slot on one turn in max_weight / weight (Envoy's arithmetic, so that
      // the same shares give the same table).
      if (static_cast<double>(turn) * b.weight < b.target) continue;
      b.target += max_weight;
      uint64_t slot = (b.offset + b.skip * b.next) % table_size;
      while (table[slot] != nullptr) slot = (b.offset + b.skip * ++b.next) % table_size;
      table[slot] = b.host;
      ++b.next;
      ++filled;
    }
  }
  return table;
}

}  // namespace meshpilot::sidecar::upstream
