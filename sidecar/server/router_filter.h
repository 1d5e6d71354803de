#pragma once

// The router filter: one request path for every downstream codec. It selects the virtual host
// and route, applies fault injection, redirects, direct responses, header mutations and
// rewrites, picks the cluster and host, opens the upstream stream in the protocol the cluster
// asks for (HTTP/1.1 or HTTP/2, or the downstream's), retries, enforces timeouts, answers
// with Envoy's local replies (gRPC-shaped for gRPC requests), and relays the response with
// its trailers.

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>

#include <string>

#include "sidecar/config/listener.h"
#include "sidecar/proxy_config.h"
#include "sidecar/server/stream.h"
#include "sidecar/server/worker.h"

namespace meshpilot::sidecar::server {

class RouterFilter {
 public:
  RouterFilter(Worker& worker, const ConnectionInfo& info, const ListenerEntry& listener,
               const config::HttpChain& chain)
      : worker_(worker), info_(info), listener_(listener), chain_(chain) {}

  // Serves one request to its end on the worker's thread.
  boost::asio::awaitable<void> Serve(DownstreamStream& down);

 private:
  Worker& worker_;
  const ConnectionInfo& info_;
  const ListenerEntry& listener_;
  const config::HttpChain& chain_;
  // The response body held in one piece (what came with the head, or a small gRPC response
  // held for its status): kept from one request of a connection to the next, so that its
  // room is allocated once.
  std::string response_body_;
};

}  // namespace meshpilot::sidecar::server
