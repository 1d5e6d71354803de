#pragma once

#include <string>

#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"

namespace meshpilot::translator {

// An HttpConnectionManager that fetches `route_config_name` over ADS and ends in the router,
// the shape both Envoy's filter chains and gRPC's api_listeners expect. Before the router,
// the filters routes configure per route (typed_per_filter_config), as istiod orders them:
// CORS and fault for sidecars; fault alone for proxyless gRPC, which has no CORS filter and
// applies fault injection only when the fault filter is in this list.
envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager
RdsConnectionManager(const std::string& stat_prefix, const std::string& route_config_name,
                     bool proxyless_grpc = false);

}  // namespace meshpilot::translator
