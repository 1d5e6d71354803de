#include "sidecar/http/header_map.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace meshpilot::sidecar::http {

namespace {

bool IsPseudo(std::string_view name) { return !name.empty() && name.front() == ':'; }

}  // namespace

HeaderMap::HeaderMap(std::initializer_list<std::pair<std::string_view, std::string_view>> entries) {
  for (const auto& [name, value] : entries) Add(name, value);
}

std::optional<std::string_view> HeaderMap::Get(std::string_view name) const {
  for (const Entry& entry : entries_) {
    if (entry.first == name) return std::string_view(entry.second);
  }
  return std::nullopt;
}

void HeaderMap::Add(std::string_view name, std::string_view value) {
  std::string lower = absl::AsciiStrToLower(absl::string_view(name.data(), name.size()));
  if (IsPseudo(lower)) {
    auto first_regular = std::find_if(entries_.begin(), entries_.end(),
                                      [](const Entry& e) { return !IsPseudo(e.first); });
    entries_.emplace(first_regular, std::move(lower), std::string(value));
  } else {
    entries_.emplace_back(std::move(lower), std::string(value));
  }
}

void HeaderMap::Set(std::string_view name, std::string_view value) {
  std::string lower = absl::AsciiStrToLower(absl::string_view(name.data(), name.size()));
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const Entry& e) { return e.first == lower; });
  if (it == entries_.end()) {
    Add(lower, value);
    return;
  }
  it->second = std::string(value);
  entries_.erase(std::remove_if(std::next(it), entries_.end(),
                                [&](const Entry& e) { return e.first == lower; }),
                 entries_.end());
}

void HeaderMap::Remove(std::string_view name) {
  std::string lower = absl::AsciiStrToLower(absl::string_view(name.data(), name.size()));
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [&](const Entry& e) { return e.first == lower; }),
                 entries_.end());
}

unsigned HeaderMap::Status() const {
  unsigned status = 0;
  auto value = Get(":status");
  if (!value || !absl::SimpleAtoi(absl::string_view(value->data(), value->size()), &status)) {
    return 0;
  }
  return status;
}

}  // namespace meshpilot::sidecar::http
