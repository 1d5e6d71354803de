#pragma once

// HTTP/2 on both sides of the router: a downstream h2c connection whose streams are each
// served by the router, and upstream streams on a shared client connection.

#include <memory>
#include <string>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "sidecar/config/listener.h"
#include "sidecar/proxy_config.h"
#include "sidecar/server/http2_connection.h"
#include "sidecar/server/stream.h"
#include "sidecar/server/transport.h"
#include "sidecar/server/worker.h"

namespace meshpilot::sidecar::server {

// Serves an h2c connection whose first bytes (the client preface) are in `preface`. When its
// listener is removed or replaced (or /drain_listeners), and at its idle_timeout, it drains as
// Envoy's: a GOAWAY notice, the final GOAWAY drain_timeout later, closed once its streams are
// done.
boost::asio::awaitable<void> ServeHttp2(Worker& worker, Transport transport,
                                        std::string preface, ConnectionInfo info,
                                        std::string listener_name, ListenerEntry listener,
                                        const config::HttpChain& chain);

// A stream to be opened on `connection` by SendHeaders.
std::unique_ptr<UpstreamStream> NewHttp2UpstreamStream(std::shared_ptr<Http2Connection> connection);

}  // namespace meshpilot::sidecar::server
