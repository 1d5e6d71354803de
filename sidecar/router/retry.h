#pragma once

// Envoy's retry decisions: which attempt outcomes a RetryPolicy retries, and the fully jittered
// exponential back-off between attempts.

#include <chrono>
#include <cstdint>

#include "sidecar/config/route.h"

namespace meshpilot::sidecar::router {

enum class AttemptOutcome {
  kConnectFailure,  // no connection to the host
  kReset,           // the connection failed before response headers
  kPerTryTimeout,   // per_try_timeout elapsed before response headers (counts as a 504)
  kResponse,        // response headers arrived with `status`
};

bool ShouldRetry(const config::RetryPolicy& policy, AttemptOutcome outcome, unsigned status = 0);

// Back-off before retry number `retry` (1 for the first retry): uniform in
// [0, min(base * 2^(retry-1), max)), as Envoy's JitteredExponentialBackOffStrategy.
std::chrono::milliseconds Backoff(const config::RetryPolicy& policy, uint32_t retry,
                                  uint64_t random);

}  // namespace meshpilot::sidecar::router
