#pragma once

#include <chrono>

#include "google/protobuf/duration.pb.h"

namespace meshpilot::translator {

inline void SetDuration(std::chrono::milliseconds in, google::protobuf::Duration& out) {
  out.set_seconds(in.count() / 1000);
  out.set_nanos(static_cast<int32_t>((in.count() % 1000) * 1000000));
}

}  // namespace meshpilot::translator
