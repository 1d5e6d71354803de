#pragma once

// The two terminal filters a connection is handed to once its listener and chain are known.

#include <memory>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "sidecar/proxy_config.h"
#include "sidecar/server/transport.h"
#include "sidecar/server/worker.h"

namespace meshpilot::sidecar::server {

// HTTP connection manager (HTTP/1.1 or HTTP/2 by codec_type) + router. `listener` keeps its
// chain alive; the route table and clusters are looked up in the current config for every
// request.
boost::asio::awaitable<void> RunHttpSession(Worker& worker, Transport transport,
                                            ConnectionInfo info, std::string listener_name,
                                            ListenerEntry listener,
                                            const config::HttpChain& chain);

// TCP proxy on the config the connection started with. `inbound`: the listener's
// traffic_direction, Istio's reporter.
boost::asio::awaitable<void> RunTcpProxy(Worker& worker, Transport downstream,
                                         ConnectionInfo info,
                                         std::shared_ptr<const ProxyConfig> config,
                                         const config::TcpProxyChain& chain, bool inbound);

}  // namespace meshpilot::sidecar::server
