#pragma once

// The timeouts of one request, as Envoy derives them: the router's route timeout (an upstream
// request timeout, 504) and the HTTP connection manager's max stream duration (408, gRPC
// DEADLINE_EXCEEDED), both possibly from the request's grpc-timeout header.

#include <chrono>
#include <optional>

#include "sidecar/config/route.h"

namespace meshpilot::sidecar::router {

struct RequestTimeouts {
  std::chrono::milliseconds route{0};  // 0: none
  // The whole stream, from its request headers; 0 has expired at once. None: no limit.
  std::optional<std::chrono::milliseconds> stream;
};

// `grpc_timeout` is the request's grpc-timeout header (http::GrpcTimeout);
// `connection_manager_max` the HTTP connection manager's max_stream_duration.
// With max_stream_duration: a grpc-timeout, when grpc_timeout_header_max is set, is the stream
// timeout, capped at the max (unless 0) and less the offset; else the route's
// max_stream_duration, else the connection manager's (0 in either: none). With
// the deprecated max_grpc_timeout, a gRPC request's route timeout is its grpc-timeout less the
// offset (when that leaves some), capped at the max (unless 0; no header: the max).
RequestTimeouts TimeoutsFor(const config::RouteAction& action, bool grpc,
                            std::optional<std::chrono::milliseconds> grpc_timeout,
                            std::optional<std::chrono::milliseconds> connection_manager_max);

}  // namespace meshpilot::sidecar::router
