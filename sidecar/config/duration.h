#pragma once

// Durations from config as the milliseconds meshproxy waits.

#include <google/protobuf/duration.pb.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace meshpilot::sidecar::config {

// The longest wait a Duration in config stands for: a larger one means "effectively never".
// Deadlines are Clock::now() + a timeout in steady_clock's nanoseconds, which overflow (undefined
// behaviour) past ~292 years; a Duration may say up to 10,000 years (more, unvalidated, on the
// wire), so every timeout is capped here at parse.
inline constexpr std::chrono::milliseconds kMaxDuration = std::chrono::hours(24 * 365 * 100);

// `d` in milliseconds (nanoseconds truncated), capped to ±kMaxDuration; whether a negative one is
// allowed is the caller's to check.
inline std::chrono::milliseconds ToMillis(const google::protobuf::Duration& d) {
  constexpr int64_t kMaxSeconds =
      std::chrono::duration_cast<std::chrono::seconds>(kMaxDuration).count();
  if (d.seconds() >= kMaxSeconds) return kMaxDuration;
  if (d.seconds() <= -kMaxSeconds) return -kMaxDuration;
  return std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
}

// Config durations are waits: a negative one is rejected with its field path.
inline absl::Status CheckDuration(const google::protobuf::Duration& d, const std::string& field) {
  if (d.seconds() < 0 || d.nanos() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must not be negative"));
  }
  return absl::OkStatus();
}

}  // namespace meshpilot::sidecar::config
