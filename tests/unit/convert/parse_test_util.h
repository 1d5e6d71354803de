#pragma once

#include <catch2/catch.hpp>

#include <initializer_list>
#include <string>
#include <variant>

#include "controlplane/convert/object.h"

namespace meshpilot::convert::testing {

inline absl::StatusOr<KubeObject> Parse(const std::string& yaml) {
  return ParseObject(YAML::Load(yaml));
}

// The object `yaml` holds, which must be valid and of type T.
template <typename T>
T ParseAs(const std::string& yaml) {
  absl::StatusOr<KubeObject> object = Parse(yaml);
  INFO(object.status().ToString());
  REQUIRE(object.ok());
  REQUIRE(std::holds_alternative<T>(*object));
  return std::get<T>(*std::move(object));
}

// The error message of `yaml`, which must be rejected.
inline std::string ErrorOf(const std::string& yaml) {
  absl::StatusOr<KubeObject> object = Parse(yaml);
  REQUIRE_FALSE(object.ok());
  return std::string(object.status().message());
}

// Checks that `error` holds each of `expected`.
inline void CheckErrors(const std::string& error, std::initializer_list<const char*> expected) {
  for (const char* message : expected) CHECK_THAT(error, Catch::Contains(message));
}

}  // namespace meshpilot::convert::testing
