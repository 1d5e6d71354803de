#include "controlplane/push/debouncer.h"

#include <algorithm>

namespace meshpilot::push {

void Debouncer::OnChange(Clock::time_point now) {
  if (!first_change_) first_change_ = now;
  last_change_ = now;
}

std::optional<Debouncer::Clock::time_point> Debouncer::Deadline() const {
  if (!first_change_) return std::nullopt;
  return std::min(last_change_ + quiet_, *first_change_ + max_);
}

bool Debouncer::Due(Clock::time_point now) const {
  std::optional<Clock::time_point> deadline = Deadline();
  return deadline && now >= *deadline;
}

void Debouncer::Reset() { first_change_.reset(); }

}  // namespace meshpilot::push
