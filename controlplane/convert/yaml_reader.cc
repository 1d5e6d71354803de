#include "controlplane/convert/yaml_reader.h"

#include <cmath>

#include "controlplane/convert/duration.h"

namespace meshpilot::convert {
namespace {

absl::string_view TypeName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "an object";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "a scalar";
    default: return "null";
  }
}

}  // namespace

MapReader::MapReader(const YAML::Node& node, FieldPath path, ValidationErrors* errors,
                     bool strict)
    : node_(node.IsDefined() && node.IsMap() ? node : YAML::Node(YAML::NodeType::Map)),
      path_(std::move(path)),
      errors_(errors),
      strict_(strict) {
  if (node.IsDefined() && !node.IsNull() && !node.IsMap()) {
    Error(absl::StrCat("must be an object, not ", TypeName(node)));
  }
  for (const auto& entry : node_) {
    if (entry.first.IsScalar()) keys_.push_back(entry.first.Scalar());
  }
}

MapReader::MapReader(MapReader&& other) noexcept
    : node_(std::move(other.node_)),
      path_(std::move(other.path_)),
      errors_(std::exchange(other.errors_, nullptr)),
      strict_(other.strict_),
      keys_(std::move(other.keys_)),
      read_(std::move(other.read_)) {}

MapReader::~MapReader() {
  if (errors_ == nullptr || !strict_) return;
  for (const std::string& key : keys_) {
    if (!read_.contains(key)) FieldError(key, "unknown field");
  }
}

YAML::Node MapReader::Take(absl::string_view key) {
  read_.insert(std::string(key));
  const YAML::Node& node = node_;  // the const operator[] never inserts
  YAML::Node value = node[std::string(key)];
  if (!value.IsDefined() || value.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
  return value;
}

bool MapReader::Has(absl::string_view key) const {
  const YAML::Node& node = node_;
  YAML::Node value = node[std::string(key)];
  return value.IsDefined() && !value.IsNull();
}

std::optional<std::string> MapReader::String(absl::string_view key) {
  YAML::Node node = Take(key);
  if (!node.IsDefined()) return std::nullopt;
  if (!node.IsScalar()) {
    FieldError(key, absl::StrCat("must be a string, not ", TypeName(node)));
    return std::nullopt;
  }
  return node.Scalar();
}

std::string MapReader::RequiredString(absl::string_view key) {
  std::optional<std::string> value = String(key);
  if (!Has(key)) {
    FieldError(key, "required");
  } else if (value && value->empty()) {
    FieldError(key, "must not be empty");
  }
  return value.value_or("");
}

std::optional<int64_t> MapReader::Int(absl::string_view key, int64_t min, int64_t max) {
  YAML::Node node = Take(key);
  if (!node.IsDefined()) return std::nullopt;
  int64_t value = 0;
  if (!node.IsScalar() || !YAML::convert<int64_t>::decode(node, value)) {
    FieldError(key, "must be an integer");
    return std::nullopt;
  }
  if (value < min || value > max) {
    FieldError(key, absl::StrCat("must be between ", min, " and ", max));
    return std::nullopt;
  }
  return value;
}

std::optional<uint32_t> MapReader::Port(absl::string_view key) {
  std::optional<int64_t> port = Int(key, 1, 65535);
  if (!port) return std::nullopt;
  return static_cast<uint32_t>(*port);
}

std::optional<uint32_t> MapReader::RequiredPort(absl::string_view key) {
  if (!Has(key)) FieldError(key, "required");
  return Port(key);
}

std::optional<double> MapReader::Double(absl::string_view key) {
  YAML::Node node = Take(key);
  if (!node.IsDefined()) return std::nullopt;
  double value = 0;
  if (!node.IsScalar() || !YAML::convert<double>::decode(node, value) || !std::isfinite(value)) {
    FieldError(key, "must be a number");
    return std::nullopt;
  }
  return value;
}

std::optional<bool> MapReader::Bool(absl::string_view key) {
  YAML::Node node = Take(key);
  if (!node.IsDefined()) return std::nullopt;
  bool value = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
    FieldError(key, "must be true or false");
    return std::nullopt;
  }
  return value;
}

std::optional<std::chrono::milliseconds> MapReader::Duration(absl::string_view key,
                                                             bool allow_zero) {
  std::optional<std::string> text = String(key);
  if (!text) return std::nullopt;
  absl::StatusOr<std::chrono::milliseconds> duration =
      ParseMillisecondDuration(*text, allow_zero);
  if (!duration.ok()) {
    CheckField(key, duration.status());
    return std::nullopt;
  }
  return *duration;
}

std::vector<std::string> MapReader::StringList(absl::string_view key) {
  const YAML::Node node = Take(key);
  std::vector<std::string> values;
  if (!node.IsDefined()) return values;
  if (!node.IsSequence()) {
    FieldError(key, absl::StrCat("must be a list, not ", TypeName(node)));
    return values;
  }
  for (size_t i = 0; i < node.size(); ++i) {
    if (node[i].IsScalar()) {
      values.push_back(node[i].Scalar());
    } else {
      errors_->Add(path_.Field(key).Index(i), "must be a string");
    }
  }
  return values;
}

std::map<std::string, std::string> MapReader::StringMap(absl::string_view key) {
  YAML::Node node = Take(key);
  std::map<std::string, std::string> values;
  if (!node.IsDefined()) return values;
  if (!node.IsMap()) {
    FieldError(key, absl::StrCat("must be an object, not ", TypeName(node)));
    return values;
  }
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    if (entry.second.IsScalar()) {
      values[entry.first.Scalar()] = entry.second.Scalar();
    } else if (entry.second.IsNull()) {
      values[entry.first.Scalar()] = "";
    } else {
      errors_->Add(path_.Field(key).Key(entry.first.Scalar()), "must be a string");
    }
  }
  return values;
}

std::optional<MapReader> MapReader::Map(absl::string_view key) {
  YAML::Node node = Take(key);
  if (!node.IsDefined()) return std::nullopt;
  return MapReader(node, path_.Field(key), errors_, strict_);
}

MapReader MapReader::Child(absl::string_view key, bool strict) {
  return MapReader(Take(key), path_.Field(key), errors_, strict);
}

std::vector<MapReader> MapReader::Items(absl::string_view key) {
  const YAML::Node node = Take(key);
  std::vector<MapReader> items;
  if (!node.IsDefined()) return items;
  if (!node.IsSequence()) {
    FieldError(key, absl::StrCat("must be a list, not ", TypeName(node)));
    return items;
  }
  for (size_t i = 0; i < node.size(); ++i) {
    items.emplace_back(node[i], path_.Field(key).Index(i), errors_, strict_);
  }
  return items;
}

std::vector<std::pair<std::string, MapReader>> MapReader::Entries(absl::string_view key) {
  YAML::Node node = Take(key);
  std::vector<std::pair<std::string, MapReader>> entries;
  if (!node.IsDefined()) return entries;
  if (!node.IsMap()) {
    FieldError(key, absl::StrCat("must be an object, not ", TypeName(node)));
    return entries;
  }
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) continue;
    const std::string& name = entry.first.Scalar();
    entries.emplace_back(name, MapReader(entry.second, path_.Field(key).Key(name), errors_,
                                         strict_));
  }
  return entries;
}

YAML::Node MapReader::Raw(absl::string_view key) { return Take(key); }

}  // namespace meshpilot::convert
