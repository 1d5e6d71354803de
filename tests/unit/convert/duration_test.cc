#include "controlplane/convert/duration.h"

#include <catch2/catch.hpp>

namespace meshpilot::convert {
namespace {

using std::chrono::milliseconds;

TEST_CASE("Durations in Istio's formats parse", "[duration]") {
  CHECK(*ParseMillisecondDuration("1.5s") == milliseconds(1500));
  CHECK(*ParseMillisecondDuration("100ms") == milliseconds(100));
  CHECK(*ParseMillisecondDuration("1m") == milliseconds(60'000));
  CHECK(*ParseMillisecondDuration("1h") == milliseconds(3'600'000));
  CHECK(*ParseMillisecondDuration("1h30m") == milliseconds(5'400'000));
  CHECK(*ParseMillisecondDuration(".5s") == milliseconds(500));
  CHECK(*ParseMillisecondDuration("1000us") == milliseconds(1));
  CHECK(*ParseMillisecondDuration("0", /*allow_zero=*/true) == milliseconds(0));
}

TEST_CASE("Malformed durations are rejected", "[duration]") {
  for (const char* text : {"", "1", "s", "1.5", "-1s", "+1s", "1 s", "1x", "1sec", "1.5.5s",
                           "99999999999999999999h", "ms"}) {
    INFO(text);
    CHECK_FALSE(ParseDuration(text).ok());
  }
}

TEST_CASE("Durations below 1ms or finer than 1ms are rejected", "[duration]") {
  CHECK_FALSE(ParseMillisecondDuration("0").ok());
  CHECK_FALSE(ParseMillisecondDuration("0s").ok());
  CHECK_FALSE(ParseMillisecondDuration("500us").ok());
  CHECK_FALSE(ParseMillisecondDuration("1.5ms").ok());
  CHECK(ParseMillisecondDuration("1ms").ok());
}

}  // namespace
}  // namespace meshpilot::convert
