#include "sidecar/config/string_match.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace meshpilot::sidecar::config {

bool StringMatch::Matches(std::string_view input) const {
  absl::string_view in(input.data(), input.size());
  switch (kind) {
    case Kind::kExact:
      return ignore_case ? absl::EqualsIgnoreCase(in, value) : in == value;
    case Kind::kPrefix:
      return ignore_case ? absl::StartsWithIgnoreCase(in, value) : absl::StartsWith(in, value);
    case Kind::kSuffix:
      return ignore_case ? absl::EndsWithIgnoreCase(in, value) : absl::EndsWith(in, value);
    case Kind::kContains:
      return ignore_case ? absl::StrContains(absl::AsciiStrToLower(in), absl::AsciiStrToLower(value))
                         : absl::StrContains(in, value);
    case Kind::kRegex:
      return re2::RE2::FullMatch(re2::StringPiece(input.data(), input.size()), *regex);
  }
  return false;
}

absl::StatusOr<std::shared_ptr<const re2::RE2>> CompileRegex(
    const envoy::type::matcher::v3::RegexMatcher& proto, const std::string& field) {
  re2::RE2::Options options;
  options.set_log_errors(false);
  auto regex = std::make_shared<const re2::RE2>(proto.regex(), options);
  if (!regex->ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".regex: invalid regex \"", proto.regex(), "\": ", regex->error()));
  }
  return regex;
}

absl::StatusOr<StringMatch> ParseStringMatch(const envoy::type::matcher::v3::StringMatcher& proto,
                                             const std::string& field) {
  using P = envoy::type::matcher::v3::StringMatcher;
  StringMatch match;
  match.ignore_case = proto.ignore_case();
  switch (proto.match_pattern_case()) {
    case P::kExact:
      match.kind = StringMatch::Kind::kExact;
      match.value = proto.exact();
      break;
    case P::kPrefix:
      match.kind = StringMatch::Kind::kPrefix;
      match.value = proto.prefix();
      break;
    case P::kSuffix:
      match.kind = StringMatch::Kind::kSuffix;
      match.value = proto.suffix();
      break;
    case P::kContains:
      match.kind = StringMatch::Kind::kContains;
      match.value = proto.contains();
      break;
    case P::kSafeRegex: {
      match.kind = StringMatch::Kind::kRegex;
      auto regex = CompileRegex(proto.safe_regex(), absl::StrCat(field, ".safe_regex"));
      if (!regex.ok()) return regex.status();
      match.regex = *std::move(regex);
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": no match pattern (exact, prefix, suffix, contains, safe_regex)"));
  }
  return match;
}

}  // namespace meshpilot::sidecar::config
