#pragma once

#include <algorithm>
#include <chrono>
#include <random>

namespace meshpilot::source {

// Exponential backoff with jitter: each delay doubles up to `max`, and is then scattered over
// [delay/2, delay], so that many clients cut off at once (an API server restart) do not come
// back in lockstep.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(initial), max_(max), next_(initial), random_(std::random_device()()) {}

  std::chrono::milliseconds Next() {
    std::chrono::milliseconds delay = next_;
    next_ = std::min(next_ * 2, max_);
    std::uniform_int_distribution<int64_t> jitter(delay.count() / 2, delay.count());
    return std::chrono::milliseconds(jitter(random_));
  }
  void Reset() { next_ = initial_; }

 private:
  const std::chrono::milliseconds initial_;
  const std::chrono::milliseconds max_;
  std::chrono::milliseconds next_;
  std::mt19937_64 random_;
};

}  // namespace meshpilot::source
