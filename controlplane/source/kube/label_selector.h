#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshpilot::source {

// A Kubernetes label selector in its string form, as `kubectl -l` and the API's
// `labelSelector` parameter take it: requirements separated by commas, all of which must hold.
//
//   key=value  key==value  key!=value   (!= also holds when the key is absent)
//   key in (a,b)  key notin (a,b)       (notin also holds when the key is absent)
//   key  !key                           (exists, does not exist)
//   key>3  key<3                        (integer comparison; fails when absent or not a number)
//
// Keys are qualified names (`example.com/tier`), values at most 63 characters of
// [A-Za-z0-9-_.] starting and ending alphanumeric, or empty: the API server's own rules.
// The empty selector selects everything.
class LabelSelector {
 public:
  // Parses `text`; InvalidArgument names the column and what was expected there, e.g.
  // `column 9: expected "(" after "in"`.
  static absl::StatusOr<LabelSelector> Parse(absl::string_view text);

  bool Matches(const std::map<std::string, std::string>& labels) const;
  bool SelectsEverything() const { return requirements_.empty(); }

 private:
  enum class Operator { kEquals, kNotEquals, kIn, kNotIn, kExists, kDoesNotExist, kGreater, kLess };
  struct Requirement {
    std::string key;
    Operator op = Operator::kExists;
    std::vector<std::string> values;
  };
  class Parser;

  std::vector<Requirement> requirements_;
};

}  // namespace meshpilot::source
