#pragma once

// Bytes relayed both ways between two connections, for the TCP proxy and for an HTTP/1.1
// request upgraded to another protocol (WebSocket): each direction runs until its end, a FIN or
// a TLS close_notify, which becomes the other side's end of sending (a close_notify then a FIN
// toward a TLS side, shutdown(SHUT_WR) toward a plaintext one) while the other direction keeps
// flowing; a reset or an error either way closes both.

#include <atomic>
#include <chrono>
#include <cstdint>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "sidecar/server/transport.h"

namespace meshpilot::sidecar::server {

// Where the bytes of each direction are counted (a cluster's stat, and an Istio metric or
// null).
struct RelayCounters {
  std::atomic<uint64_t>& to_upstream;
  std::atomic<uint64_t>* istio_to_upstream = nullptr;
  std::atomic<uint64_t>& to_downstream;
  std::atomic<uint64_t>* istio_to_downstream = nullptr;
};

// Returns when both directions have ended. With `idle` above 0, both connections are closed
// once no byte has moved either way for that long.
boost::asio::awaitable<void> Relay(boost::asio::io_context& io, Transport& downstream,
                                   Transport& upstream, RelayCounters counters,
                                   std::chrono::milliseconds idle);

}  // namespace meshpilot::sidecar::server
