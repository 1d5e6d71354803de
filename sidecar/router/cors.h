#pragma once

// Envoy's CORS filter on a route's policy: a preflight from an allowed origin is answered
// here; any other request from an allowed origin gets the CORS headers on its response. A
// request without an Origin, or from an origin the policy does not allow, gets no CORS headers
// (a preflight then goes on to the route, unless forward_not_matching_preflights is false).

#include <optional>

#include "sidecar/config/route.h"
#include "sidecar/http/header_map.h"

namespace meshpilot::sidecar::router {

struct CorsDecision {
  // Set: answer the request with these headers and no body (a preflight).
  std::optional<http::HeaderMap> local_reply;
  // The CORS headers of the response (empty when the request is not an allowed CORS request).
  config::HeaderMutations response_headers;
};

CorsDecision DecideCors(const config::Cors& cors, const http::HeaderMap& request);

}  // namespace meshpilot::sidecar::router
