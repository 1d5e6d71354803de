#pragma once

// Envoy protos for tests, written as the JSON a control plane would send.

#include <google/protobuf/util/json_util.h>

#include <stdexcept>
#include <string>

namespace meshpilot::sidecar::testing {

template <typename T>
T FromJson(const std::string& json) {
  T message;
  auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  if (!status.ok()) throw std::runtime_error("bad test JSON: " + status.ToString());
  return message;
}

}  // namespace meshpilot::sidecar::testing
