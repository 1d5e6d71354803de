#pragma once

// Header work on HTTP/1.1 messages: Envoy's request/response header mutations, hop-by-hop
// header removal, and request ids.

#include <boost/beast/http/fields.hpp>

#include <random>
#include <string>

#include "sidecar/config/route.h"

namespace meshpilot::sidecar::router {

void ApplyHeaderMutations(const config::HeaderMutations& mutations,
                          boost::beast::http::fields& headers);

// Removes Connection (and the headers it names), Keep-Alive, Proxy-Connection, Upgrade, TE and
// Trailer: they describe one hop, not the request. Transfer-Encoding is left to the framing.
void StripHopByHop(boost::beast::http::fields& headers);

// A random version-4 UUID, as Envoy's x-request-id.
std::string NewRequestId(std::mt19937_64& rng);

}  // namespace meshpilot::sidecar::router
