#pragma once

// Envoy's StringMatcher as a plain, compiled value: exact, prefix, suffix, contains or an RE2
// regex (full match), optionally case-insensitive.

#include <re2/re2.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "envoy/type/matcher/v3/regex.pb.h"
#include "envoy/type/matcher/v3/string.pb.h"

namespace meshpilot::sidecar::config {

struct StringMatch {
  enum class Kind { kExact, kPrefix, kSuffix, kContains, kRegex };
  Kind kind = Kind::kExact;
  std::string value;
  bool ignore_case = false;
  std::shared_ptr<const re2::RE2> regex;

  bool Matches(std::string_view input) const;
};

// `field` is the path of the matcher in its resource, for error messages.
absl::StatusOr<StringMatch> ParseStringMatch(const envoy::type::matcher::v3::StringMatcher& proto,
                                             const std::string& field);
absl::StatusOr<std::shared_ptr<const re2::RE2>> CompileRegex(
    const envoy::type::matcher::v3::RegexMatcher& proto, const std::string& field);

}  // namespace meshpilot::sidecar::config
