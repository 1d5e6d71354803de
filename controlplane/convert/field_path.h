#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace meshpilot::convert {

// Where a field sits in an object, written the way kubectl and Istio print it:
// `spec.http[0].route[1].weight`, `metadata.labels[app]`.
class FieldPath {
 public:
  FieldPath() = default;
  explicit FieldPath(std::string path) : path_(std::move(path)) {}

  FieldPath Field(absl::string_view name) const {
    return FieldPath(path_.empty() ? std::string(name) : absl::StrCat(path_, ".", name));
  }
  FieldPath Index(size_t index) const { return FieldPath(absl::StrCat(path_, "[", index, "]")); }
  FieldPath Key(absl::string_view key) const {
    return FieldPath(absl::StrCat(path_, "[", key, "]"));
  }

  const std::string& str() const { return path_; }

 private:
  std::string path_;
};

// Collects every problem of one object, each prefixed by its field path, so that a user
// fixes a document in one round instead of one error at a time.
class ValidationErrors {
 public:
  void Add(const FieldPath& path, absl::string_view message) {
    messages_.push_back(path.str().empty() ? std::string(message)
                                           : absl::StrCat(path.str(), ": ", message));
  }
  // Records `status` unless it is OK.
  void Add(const FieldPath& path, const absl::Status& status) {
    if (!status.ok()) Add(path, status.message());
  }

  bool empty() const { return messages_.empty(); }
  const std::vector<std::string>& messages() const { return messages_; }

  // OK when nothing was recorded; otherwise InvalidArgument listing every message.
  absl::Status ToStatus() const {
    if (messages_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrJoin(messages_, "; "));
  }

 private:
  std::vector<std::string> messages_;
};

}  // namespace meshpilot::convert
