#include "controlplane/convert/duration.h"

#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace meshpilot::convert {
namespace {

constexpr int64_t kMaxNanos = std::numeric_limits<int64_t>::max();

// Longest first, so that "ms" is not read as "m".
constexpr std::pair<absl::string_view, int64_t> kUnits[] = {
    {"ns", 1},
    {"us", 1'000},
    {"\u00b5s", 1'000},  // micro sign
    {"\u03bcs", 1'000},  // Greek mu
    {"ms", 1'000'000},
    {"s", 1'000'000'000},
    {"m", 60'000'000'000},
    {"h", 3'600'000'000'000},
};

absl::Status Invalid(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid duration \"", text, "\" (", why, "); use a number with a unit, e.g. \"1.5s\""));
}

}  // namespace

absl::StatusOr<std::chrono::nanoseconds> ParseDuration(absl::string_view text) {
  if (text == "0") return std::chrono::nanoseconds(0);
  if (text.empty()) return Invalid(text, "empty");
  absl::string_view rest = text;
  int64_t total = 0;
  while (!rest.empty()) {
    int64_t whole = 0;
    bool has_digits = false;
    while (!rest.empty() && absl::ascii_isdigit(rest.front())) {
      int digit = rest.front() - '0';
      if (whole > (kMaxNanos - digit) / 10) return Invalid(text, "too large");
      whole = whole * 10 + digit;
      has_digits = true;
      rest.remove_prefix(1);
    }
    // Fractional digits beyond 18 cannot change a nanosecond count; like Go, drop them.
    int64_t fraction = 0;
    int64_t scale = 1;
    if (!rest.empty() && rest.front() == '.') {
      rest.remove_prefix(1);
      while (!rest.empty() && absl::ascii_isdigit(rest.front())) {
        if (scale < 1'000'000'000'000'000'000) {
          fraction = fraction * 10 + (rest.front() - '0');
          scale *= 10;
        }
        has_digits = true;
        rest.remove_prefix(1);
      }
    }
    if (!has_digits) return Invalid(text, "expected a number");

    int64_t unit = 0;
    for (const auto& [name, nanos] : kUnits) {
      if (absl::StartsWith(rest, name)) {
        unit = nanos;
        rest.remove_prefix(name.size());
        break;
      }
    }
    if (unit == 0) return Invalid(text, "missing or unknown unit");

    if (whole > kMaxNanos / unit) return Invalid(text, "too large");
    int64_t nanos = whole * unit +
                    static_cast<int64_t>(static_cast<double>(fraction) *
                                         (static_cast<double>(unit) / static_cast<double>(scale)));
    if (nanos < 0 || total > kMaxNanos - nanos) return Invalid(text, "too large");
    total += nanos;
  }
  return std::chrono::nanoseconds(total);
}

absl::StatusOr<std::chrono::milliseconds> ParseMillisecondDuration(absl::string_view text,
                                                                   bool allow_zero) {
  absl::StatusOr<std::chrono::nanoseconds> duration = ParseDuration(text);
  if (!duration.ok()) return duration.status();
  if (allow_zero && duration->count() == 0) return std::chrono::milliseconds(0);
  if (*duration < std::chrono::milliseconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("duration \"", text, "\" must be at least 1ms"));
  }
  if (*duration % std::chrono::milliseconds(1) != std::chrono::nanoseconds(0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("duration \"", text, "\" must be a whole number of milliseconds"));
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(*duration);
}

}  // namespace meshpilot::convert
