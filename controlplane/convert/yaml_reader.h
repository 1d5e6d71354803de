#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "controlplane/convert/field_path.h"
#include "yaml-cpp/yaml.h"

namespace meshpilot::convert {

// Reads one YAML mapping field by field. A getter never throws: a field of the wrong type or
// out of range is recorded in the shared ValidationErrors with its path and reads as absent,
// so one pass reports every problem of a document. A null field reads as absent, as in
// Kubernetes.
//
// A strict reader reports, when destroyed, the keys nobody read: a misspelt `perTryTimout`
// must not be dropped silently (kubectl's strict field validation rejects it as well).
// Kubernetes kinds are read non-strictly since meshpilot reads only a few of their fields.
class MapReader {
 public:
  // A `node` that is not a mapping is reported and read as an empty one.
  MapReader(const YAML::Node& node, FieldPath path, ValidationErrors* errors, bool strict);
  MapReader(MapReader&& other) noexcept;
  MapReader& operator=(MapReader&&) = delete;
  ~MapReader();

  const FieldPath& path() const { return path_; }
  bool Has(absl::string_view key) const;

  // Records `message` against this mapping, or against one of its fields.
  void Error(absl::string_view message) { errors_->Add(path_, message); }
  void FieldError(absl::string_view key, absl::string_view message) {
    errors_->Add(path_.Field(key), message);
  }
  void CheckField(absl::string_view key, const absl::Status& status) {
    errors_->Add(path_.Field(key), status);
  }

  std::optional<std::string> String(absl::string_view key);
  // An absent or empty value is reported as "required" and read as "".
  std::string RequiredString(absl::string_view key);
  std::optional<int64_t> Int(absl::string_view key, int64_t min, int64_t max);
  std::optional<uint32_t> Port(absl::string_view key);  // 1..65535
  // Port, reporting an absent value as "required".
  std::optional<uint32_t> RequiredPort(absl::string_view key);
  std::optional<double> Double(absl::string_view key);
  std::optional<bool> Bool(absl::string_view key);
  // A duration string as Istio accepts it ("1.5s", "100ms", "1h"), at least 1ms unless
  // `allow_zero`, in whole milliseconds.
  std::optional<std::chrono::milliseconds> Duration(absl::string_view key, bool allow_zero = false);
  std::vector<std::string> StringList(absl::string_view key);
  std::map<std::string, std::string> StringMap(absl::string_view key);

  // One of `names`, mapped to its value; anything else is reported.
  template <typename Enum>
  std::optional<Enum> Enumerator(absl::string_view key,
                                 std::initializer_list<std::pair<absl::string_view, Enum>> names);

  // Nested mappings share this reader's errors and strictness.
  std::optional<MapReader> Map(absl::string_view key);
  // The mapping at `key`, empty when absent, read with its own strictness: Kubernetes objects
  // wrap strictly read Istio specs in leniently read envelopes.
  MapReader Child(absl::string_view key, bool strict);
  // A list of mappings, each with its indexed path (`route[1]`).
  std::vector<MapReader> Items(absl::string_view key);
  // A mapping from names to mappings (`headers: {x-user: {exact: a}}`), by name.
  std::vector<std::pair<std::string, MapReader>> Entries(absl::string_view key);
  // The node itself, for fields of several shapes (targetPort: 8080 or "http").
  YAML::Node Raw(absl::string_view key);

 private:
  // Marks `key` read and returns its node, undefined when absent or null.
  YAML::Node Take(absl::string_view key);

  YAML::Node node_;
  FieldPath path_;
  ValidationErrors* errors_;  // null once moved from
  bool strict_;
  std::vector<std::string> keys_;  // in document order, for the unknown-field report
  absl::flat_hash_set<std::string> read_;
};

template <typename Enum>
std::optional<Enum> MapReader::Enumerator(
    absl::string_view key, std::initializer_list<std::pair<absl::string_view, Enum>> names) {
  std::optional<std::string> text = String(key);
  if (!text) return std::nullopt;
  for (const auto& [name, value] : names) {
    if (*text == name) return value;
  }
  std::vector<absl::string_view> all;
  for (const auto& entry : names) all.push_back(entry.first);
  FieldError(key, absl::StrCat("must be one of ", absl::StrJoin(all, ", ")));
  return std::nullopt;
}

}  // namespace meshpilot::convert
