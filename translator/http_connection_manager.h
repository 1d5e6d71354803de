#pragma once

#include <string>

#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"

namespace meshpilot::translator {

// An HttpConnectionManager that fetches `route_config_name` over ADS and ends in the router,
// the shape both Envoy's filter chains and gRPC's api_listeners expect.
envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager
RdsConnectionManager(const std::string& stat_prefix, const std::string& route_config_name);

}  // namespace meshpilot::translator
