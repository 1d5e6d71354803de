#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/cache/resource.h"
#include "translator/proxy.h"

namespace meshpilot::xds {

// What one stream knows about one xDS type: the client's subscription and where the
// request/response exchange stands.
struct TypeStatus {
  bool subscribed = false;
  bool wildcard = false;
  std::set<std::string> names;  // named subscriptions (EDS, RDS, and non-wildcard LDS/CDS)
  // SotW: the response's version_info. Delta: its system_version_info, the hash of every
  // (name, version) the client holds once it applies the response.
  std::string sent_version;
  std::string sent_nonce;
  std::string acked_version;
  std::string nacked_version;  // never sent again to this stream
  std::string nack_error;      // the client's error_detail for nacked_version
  uint64_t pushes = 0;
  uint64_t rejects = 0;
  // LDS/RDS: the client's last answer was a NACK (or, on a new stream, was one on the node's
  // previous stream and it has not answered since): it runs older listeners or routes.
  bool rejected = false;
  // CDS/EDS: what the client keeps, though the state removed it, because listeners or routes
  // it runs or may run still name it (make before break).
  std::vector<std::string> held;
};

// The two variants of ADS: StreamAggregatedResources and DeltaAggregatedResources.
enum class Protocol { kStateOfTheWorld, kDelta };
inline std::string_view ProtocolName(Protocol protocol) {
  return protocol == Protocol::kDelta ? "delta" : "sotw";
}

// A point-in-time copy of one ADS stream, for the debug endpoints.
struct StreamStatus {
  std::string connection_id;  // node id + "-" + a per-server counter, as istiod names them
  std::string peer;
  Protocol protocol = Protocol::kStateOfTheWorld;
  translator::ProxyInfo proxy;
  std::chrono::system_clock::time_point connected_at;
  std::array<TypeStatus, cache::kResourceTypeCount> types;
};

}  // namespace meshpilot::xds
