#pragma once

// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
// Load Balancer", NSDI 2016), built as Envoy's MAGLEV load balancer builds its table: every host
// walks its own permutation of the table's slots (an offset and a skip from hashes of its key)
// and takes the next free slot on its turn; turns come in proportion to the hosts' weights, until
// every slot is taken. A request's hash picks slot `hash % size`. Adding or removing a host moves
// few slots, and the hosts' shares of the table follow their weights closely.

#include <cstdint>
#include <string>
#include <vector>

namespace meshpilot::sidecar::upstream {

struct Host;

struct MaglevHost {
  const Host* host;
  std::string key;  // what places it: its address, "IP:PORT" or "[IPv6]:PORT" (AddressString)
  double weight;    // > 0; only the ratios matter
};

// The table of `table_size` slots (a prime, as Envoy requires; 65537 by default), each naming a
// host; empty when there is no host.
std::vector<const Host*> BuildMaglevTable(const std::vector<MaglevHost>& hosts,
                                          uint64_t table_size);

}  // namespace meshpilot::sidecar::upstream
