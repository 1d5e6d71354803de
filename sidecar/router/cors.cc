#include "sidecar/router/cors.h"

#include <algorithm>
#include <string>

namespace meshpilot::sidecar::router {
namespace {

using Action = config::HeaderToAdd::Action;

void Put(config::HeaderMutations& headers, std::string name, std::string value) {
  headers.add.push_back({std::move(name), std::move(value), Action::kOverwriteIfExistsOrAdd});
}

}  // namespace

CorsDecision DecideCors(const config::Cors& cors, const http::HeaderMap& request) {
  CorsDecision decision;
  const std::optional<std::string_view> origin = request.Get("origin");
  if (!origin || origin->empty()) return decision;
  const bool allowed =
      std::any_of(cors.allow_origins.begin(), cors.allow_origins.end(),
                  [&](const config::StringMatch& match) { return match.Matches(*origin); });
  const bool preflight = request.GetOr(":method", "") == "OPTIONS" &&
                         !request.GetOr("access-control-request-method", "").empty();
  if (!allowed) {
    if (preflight && !cors.forward_not_matching_preflights) {
      decision.local_reply.emplace().Add(":status", "200");
    }
    return decision;
  }
  config::HeaderMutations& headers = decision.response_headers;
  Put(headers, "access-control-allow-origin", std::string(*origin));
  if (cors.allow_credentials) Put(headers, "access-control-allow-credentials", "true");
  if (!preflight) {
    if (!cors.expose_headers.empty()) {
      Put(headers, "access-control-expose-headers", cors.expose_headers);
    }
    return decision;
  }
  if (!cors.allow_methods.empty()) Put(headers, "access-control-allow-methods", cors.allow_methods);
  if (!cors.allow_headers.empty()) Put(headers, "access-control-allow-headers", cors.allow_headers);
  if (!cors.max_age.empty()) Put(headers, "access-control-max-age", cors.max_age);
  if (cors.allow_private_network_access &&
      request.GetOr("access-control-request-private-network", "") == "true") {
    Put(headers, "access-control-allow-private-network", "true");
  }
  http::HeaderMap& reply = decision.local_reply.emplace();
  reply.Add(":status", "200");
  for (const config::HeaderToAdd& header : headers.add) reply.Add(header.key, header.value);
  headers.add.clear();
  return decision;
}

}  // namespace meshpilot::sidecar::router
