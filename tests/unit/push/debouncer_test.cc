#include <catch2/catch.hpp>

#include "controlplane/push/debouncer.h"

namespace meshpilot::push {
namespace {

using namespace std::chrono_literals;
using Clock = Debouncer::Clock;

TEST_CASE("nothing is due without a change", "[debounce]") {
  Debouncer debouncer(100ms, 1s);
  CHECK_FALSE(debouncer.Deadline().has_value());
  CHECK_FALSE(debouncer.Due(Clock::time_point{} + 1h));
}

TEST_CASE("a single change is pushed after the quiet period", "[debounce]") {
  Debouncer debouncer(100ms, 1s);
  Clock::time_point t0{};
  debouncer.OnChange(t0);
  CHECK_FALSE(debouncer.Due(t0 + 99ms));
  CHECK(debouncer.Due(t0 + 100ms));
}

TEST_CASE("each change restarts the quiet period", "[debounce]") {
  Debouncer debouncer(100ms, 1s);
  Clock::time_point t0{};
  debouncer.OnChange(t0);
  debouncer.OnChange(t0 + 80ms);
  CHECK_FALSE(debouncer.Due(t0 + 150ms));
  CHECK(debouncer.Due(t0 + 180ms));
}

TEST_CASE("a steady stream of changes is pushed by the max delay", "[debounce]") {
  Debouncer debouncer(100ms, 1s);
  Clock::time_point t0{};
  for (auto t = 0ms; t < 2s; t += 50ms) {
    debouncer.OnChange(t0 + t);
    if (debouncer.Due(t0 + t)) {
      CHECK(t == 1s);
      return;
    }
  }
  FAIL("the burst was never pushed");
}

TEST_CASE("reset starts a new burst", "[debounce]") {
  Debouncer debouncer(100ms, 1s);
  Clock::time_point t0{};
  debouncer.OnChange(t0);
  debouncer.Reset();
  CHECK_FALSE(debouncer.Deadline().has_value());
  debouncer.OnChange(t0 + 5s);
  CHECK(*debouncer.Deadline() == t0 + 5s + 100ms);
}

}  // namespace
}  // namespace meshpilot::push
