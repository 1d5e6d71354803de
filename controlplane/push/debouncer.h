#pragma once

#include <chrono>
#include <optional>

namespace meshpilot::push {

// Decides when a burst of config changes is pushed: once no change has arrived for `quiet`,
// or `max` after the first change of the burst, whichever comes first. Pure: time is passed
// in, so tests need no sleeps.
class Debouncer {
 public:
  using Clock = std::chrono::steady_clock;

  Debouncer(Clock::duration quiet, Clock::duration max) : quiet_(quiet), max_(max) {}

  void OnChange(Clock::time_point now);
  // When the pending changes are due; nullopt when nothing is pending.
  std::optional<Clock::time_point> Deadline() const;
  bool Due(Clock::time_point now) const;
  // Called when the push starts: the burst is consumed.
  void Reset();

 private:
  Clock::duration quiet_;
  Clock::duration max_;
  std::optional<Clock::time_point> first_change_;
  Clock::time_point last_change_;
};

}  // namespace meshpilot::push
