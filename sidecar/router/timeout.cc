#include "sidecar/router/timeout.h"

namespace meshpilot::sidecar::router {

using std::chrono::milliseconds;

RequestTimeouts TimeoutsFor(const config::RouteAction& action, bool grpc,
                            std::optional<milliseconds> grpc_timeout) {
  RequestTimeouts out{action.timeout, std::nullopt};
  const config::StreamTimeouts& t = action.stream_timeouts;
  if (t.legacy) {
    // Envoy's FilterUtility::finalTimeout.
    if (!grpc) return out;
    milliseconds timeout = grpc_timeout.value_or(milliseconds(0));
    if (t.grpc_timeout_header_offset < timeout) timeout -= t.grpc_timeout_header_offset;
    const milliseconds max = *t.grpc_timeout_header_max;
    if (max.count() != 0 && (timeout.count() == 0 || timeout > max)) timeout = max;
    out.route = timeout;
    return out;
  }
  // Envoy's ConnectionManagerImpl::ActiveStream::refreshDurationTimeout.
  if (grpc_timeout && t.grpc_timeout_header_max) {
    milliseconds timeout = *grpc_timeout;
    const milliseconds max = *t.grpc_timeout_header_max;
    if (max.count() != 0 && timeout > max) timeout = max;
    if (timeout.count() != 0 && t.grpc_timeout_header_offset.count() != 0) {
      timeout = t.grpc_timeout_header_offset < timeout ? timeout - t.grpc_timeout_header_offset
                                                       : milliseconds(0);
    }
    out.stream = timeout;
  } else if (t.max_stream_duration.count() != 0) {
    out.stream = t.max_stream_duration;
  }
  return out;
}

}  // namespace meshpilot::sidecar::router
