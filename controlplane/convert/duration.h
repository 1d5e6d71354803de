#pragma once

#include <chrono>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshpilot::convert {

// Parses a duration the way Istio reads its YAML (Go's time.ParseDuration): a sequence of
// decimal numbers each with a unit among ns, us, µs, ms, s, m, h ("1.5s", "100ms", "1h30m"),
// or "0". Strict: no sign, no spaces, no number without a unit.
absl::StatusOr<std::chrono::nanoseconds> ParseDuration(absl::string_view text);

// ParseDuration plus Istio's rule for duration fields: at least 1ms (or exactly 0 when
// `allow_zero`) and a whole number of milliseconds.
absl::StatusOr<std::chrono::milliseconds> ParseMillisecondDuration(absl::string_view text,
                                                                   bool allow_zero = false);

}  // namespace meshpilot::convert
