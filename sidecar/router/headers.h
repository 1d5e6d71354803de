#pragma once

// Header work on requests and responses of either protocol: Envoy's request/response header
// mutations, hop-by-hop header removal, and request ids.

#include <random>
#include <string>
#include <string_view>

#include "sidecar/config/route.h"
#include "sidecar/http/header_map.h"

namespace meshpilot::sidecar::router {

void ApplyHeaderMutations(const config::HeaderMutations& mutations, http::HeaderMap& headers);

// Removes what describes one hop, not the message: Connection and the headers it names,
// Keep-Alive, Proxy-Connection, Upgrade, Transfer-Encoding, Trailer, and TE unless it is
// exactly "trailers" (gRPC needs it end to end; Envoy keeps it too). The codec that sends the
// message adds its own framing.
void StripHopByHop(http::HeaderMap& headers);

// The host of a mirrored request, as Envoy's: "host" -> "host-shadow",
// "host:port" -> "host-shadow:port".
std::string ShadowHost(std::string_view host);

// A random version-4 UUID, as Envoy's x-request-id.
std::string NewRequestId(std::mt19937_64& rng);

}  // namespace meshpilot::sidecar::router
