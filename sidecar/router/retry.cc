#include "sidecar/router/retry.h"

#include <algorithm>

#include "sidecar/http/grpc.h"

namespace meshpilot::sidecar::router {

bool ShouldRetry(const config::RetryPolicy& p, AttemptOutcome outcome, unsigned status,
                 std::optional<uint32_t> grpc_status) {
  switch (outcome) {
    case AttemptOutcome::kConnectFailure:
      return p.on_connect_failure || p.on_5xx || p.on_gateway_error || p.on_reset;
    case AttemptOutcome::kReset:
      return p.on_5xx || p.on_gateway_error || p.on_reset;
    case AttemptOutcome::kRefusedStream:
      return p.on_refused_stream || p.on_5xx || p.on_gateway_error || p.on_reset;
    case AttemptOutcome::kPerTryTimeout:
      // Envoy resets the attempt (a local reset) and retries it as one.
      return p.on_5xx || p.on_gateway_error || p.on_reset;
    case AttemptOutcome::kResponse:
      if (p.on_5xx && status >= 500 && status <= 599) return true;
      if (p.on_gateway_error && (status == 502 || status == 503 || status == 504)) return true;
      if (p.on_retriable_4xx && status == 409) return true;
      if (p.on_retriable_status_codes &&
          std::find(p.retriable_status_codes.begin(), p.retriable_status_codes.end(), status) !=
              p.retriable_status_codes.end()) {
        return true;
      }
      if (grpc_status) {
        switch (static_cast<http::GrpcStatus>(*grpc_status)) {
          case http::GrpcStatus::kCancelled:
            return p.on_grpc_cancelled;
          case http::GrpcStatus::kDeadlineExceeded:
            return p.on_grpc_deadline_exceeded;
          case http::GrpcStatus::kInternal:
            return p.on_grpc_internal;
          case http::GrpcStatus::kResourceExhausted:
            return p.on_grpc_resource_exhausted;
          case http::GrpcStatus::kUnavailable:
            return p.on_grpc_unavailable;
          default:
            return false;
        }
      }
      return false;
  }
  return false;
}

std::chrono::milliseconds Backoff(const config::RetryPolicy& policy, uint32_t retry,
                                  uint64_t random) {
  int64_t ceiling = policy.base_interval.count();
  for (uint32_t i = 1; i < retry && ceiling < policy.max_interval.count(); ++i) ceiling *= 2;
  ceiling = std::min<int64_t>(ceiling, policy.max_interval.count());
  if (ceiling <= 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(static_cast<int64_t>(random % static_cast<uint64_t>(ceiling)));
}

}  // namespace meshpilot::sidecar::router
