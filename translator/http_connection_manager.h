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

// Istio's HTTP metadata exchange, first in a sidecar's HTTP filters, as istiod writes it:
// `istio.metadata_exchange`, an io.istio.http.peer_metadata.Config (Istio's proxy's own type,
// so in an xds.type.v3.TypedStruct) with istio_headers discovery and propagation, downstream
// on inbound listeners, upstream on outbound ones. Optional: an Envoy without Istio's
// extensions skips it; meshproxy does the exchange.
envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter
MetadataExchangeFilter(bool inbound);

// WebSocket upgrades, which istiod allows on every sidecar HTTP connection manager.
void AllowWebSocket(
    envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager& hcm);

}  // namespace meshpilot::translator
