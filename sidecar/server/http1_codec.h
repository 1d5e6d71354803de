#pragma once

// HTTP/1.1 downstream on Boost.Beast: keep-alive, chunked and streamed bodies both ways; each
// request is served by the router.

#include <string>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include "sidecar/config/listener.h"
#include "sidecar/proxy_config.h"
#include "sidecar/server/transport.h"
#include "sidecar/server/worker.h"

namespace meshpilot::sidecar::server {

// Serves requests on `stream` until the connection closes; `buffer` holds bytes already read.
// A listener that was removed or replaced drains: the request in flight is served, then the
// connection closes.
boost::asio::awaitable<void> ServeHttp1(Worker& worker, Transport& stream,
                                        boost::beast::flat_buffer& buffer,
                                        const ConnectionInfo& info,
                                        const std::string& listener_name,
                                        const ListenerEntry& listener,
                                        const config::HttpChain& chain);

}  // namespace meshpilot::sidecar::server
