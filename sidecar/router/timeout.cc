#include "sidecar/router/timeout.h"

namespace meshpilot::sidecar::router {

using std::chrono::milliseconds;

RequestTimeouts TimeoutsFor(const config::RouteAction& action, bool grpc,
                            std::optional<milliseconds> grpc_timeout,
                            std::optional<milliseconds> connection_manager_max) {
  RequestTimeouts out{action.timeout, std::nullopt};
  const config::StreamTimeouts& t = action.stream_timeouts;
  // Envoy's ConnectionManagerImpl::ActiveStream::refreshDurationTimeout.
  if (!t.legacy && grpc_timeout && t.grpc_timeout_header_max) {
    milliseconds timeout = *grpc_timeout;
    const milliseconds max = *t.grpc_timeout_header_max;
    if (max.count() != 0 && timeout > max) timeout = max;
    if (timeout.count() != 0 && t.grpc_timeout_header_offset.count() != 0) {
      timeout = t.grpc_timeout_header_offset < timeout ? timeout - t.grpc_timeout_header_offset
                                                       : milliseconds(0);
    }
    out.stream = timeout;
  } else if (const milliseconds max = t.max_stream_duration.value_or(
                 connection_manager_max.value_or(milliseconds(0)));
             max.count() != 0) {
    out.stream = max;
  }
  if (t.legacy && grpc) {
    // Envoy's FilterUtility::finalTimeout.
    milliseconds timeout = grpc_timeout.value_or(milliseconds(0));
    if (t.grpc_timeout_header_offset < timeout) timeout -= t.grpc_timeout_header_offset;
    const milliseconds max = *t.grpc_timeout_header_max;
    if (max.count() != 0 && (timeout.count() == 0 || timeout > max)) timeout = max;
    out.route = timeout;
  }
  return out;
}

}  // namespace meshpilot::sidecar::router
