#pragma once

// HTTP/1.1 upgrades (WebSocket), as Envoy's: a request with `Upgrade: TYPE` whose Connection
// header lists "upgrade" goes upstream with both headers on a connection of its own; if the
// upstream answers 101 Switching Protocols, the 101 goes to the client and from then on the two
// connections relay bytes both ways (server/relay.h) until both sides end. Any other answer is
// passed on as a response. Whether a type may upgrade: the route's upgrade_configs, else the
// HTTP connection manager's; a type neither enables is refused with 403 (the router's).

#include <chrono>
#include <memory>
#include <string>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "sidecar/config/cluster.h"
#include "sidecar/config/listener.h"
#include "sidecar/http/header_map.h"
#include "sidecar/server/stream.h"
#include "sidecar/server/transport.h"
#include "sidecar/server/worker.h"

namespace meshpilot::sidecar::server {

// The upgrade a request asks for (its Upgrade header's value, as sent) when its Connection
// header lists "upgrade"; empty otherwise, and for h2c (served as HTTP/1.1, as Envoy does).
std::string UpgradeRequested(const http::HeaderMap& request);

// Whether the upgrade `type` may go ahead on `route` of `chain`.
bool UpgradeAllowed(std::string_view type, const config::HttpChain& chain,
                    const config::RouteAction& route);

struct UpgradeResponse {
  StreamError error = StreamError::kNone;  // no response head came
  http::HeaderMap headers;                 // the response head
  std::string body;                        // not a 101: its body, whole
  std::unique_ptr<Transport> upstream;     // a 101: the connection, the tunnel's upstream end
  std::string early;                       // a 101: what the upstream sent past its head
};

// Sends `request` (with its Upgrade and Connection headers) and its `body` (the router holds
// a body with a length) on a new connection to `peer` with the cluster's socket options and
// TLS, and reads the answer: a 101's connection is left for the tunnel; another answer is read
// whole. The head must come by `deadline`.
boost::asio::awaitable<UpgradeResponse> SendUpgrade(Worker& worker,
                                                    const config::ClusterConfig& cluster,
                                                    ClusterStats& stats,
                                                    const boost::asio::ip::tcp::endpoint& peer,
                                                    const http::HeaderMap& request,
                                                    std::string_view body,
                                                    Clock::time_point deadline);

// Writes `upstream`'s 101 head (as the router left it) to the client, then relays bytes both
// ways (what either side sent early first) until both sides end, or nothing moves for `idle`
// (0: no limit).
boost::asio::awaitable<void> RunTunnel(Worker& worker, DownstreamStream::Tunnel downstream,
                                       UpgradeResponse& upstream, ClusterStats& stats,
                                       std::chrono::milliseconds idle);

}  // namespace meshpilot::sidecar::server
