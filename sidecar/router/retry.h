#pragma once

// Envoy's retry decisions: which attempt outcomes a RetryPolicy retries, and the fully jittered
// exponential back-off between attempts.

#include <chrono>
#include <cstdint>
#include <optional>

#include "sidecar/config/route.h"

namespace meshpilot::sidecar::router {

enum class AttemptOutcome {
  kConnectFailure,  // no connection to the host
  kReset,           // the connection or stream failed before response headers
  kRefusedStream,   // the HTTP/2 peer refused the stream (nothing of it was processed)
  kPerTryTimeout,   // per_try_timeout elapsed before response headers (counts as a 504)
  kResponse,        // a response arrived with `status` (and, for gRPC, `grpc_status`)
};

bool ShouldRetry(const config::RetryPolicy& policy, AttemptOutcome outcome, unsigned status = 0,
                 std::optional<uint32_t> grpc_status = std::nullopt);

// Back-off before retry number `retry` (1 for the first retry): uniform in
// [0, min(base * 2^(retry-1), max)), as Envoy's JitteredExponentialBackOffStrategy.
std::chrono::milliseconds Backoff(const config::RetryPolicy& policy, uint32_t retry,
                                  uint64_t random);

}  // namespace meshpilot::sidecar::router
