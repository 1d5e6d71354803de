#include "sidecar/http/header_map.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

namespace meshpilot::sidecar::http {

namespace {

bool IsPseudo(std::string_view name) { return !name.empty() && name.front() == ':'; }

// `lower` is a stored (lower-case) name; `name` may come in any case. No lower-case copy.
bool SameName(std::string_view lower, std::string_view name) {
  return lower.size() == name.size() &&
         absl::EqualsIgnoreCase(absl::string_view(lower.data(), lower.size()),
                                absl::string_view(name.data(), name.size()));
}

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
  Entry entry{std::string(name), std::string(value)};
  absl::AsciiStrToLower(&entry.first);
  if (IsPseudo(entry.first)) {
    auto first_regular = std::find_if(entries_.begin(), entries_.end(),
                                      [](const Entry& e) { return !IsPseudo(e.first); });
    entries_.insert(first_regular, std::move(entry));
  } else {
    entries_.push_back(std::move(entry));
  }
}

void HeaderMap::Set(std::string_view name, std::string_view value) {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const Entry& e) { return SameName(e.first, name); });
  if (it == entries_.end()) {
    Add(name, value);
    return;
  }
  it->second.assign(value);
  entries_.erase(std::remove_if(std::next(it), entries_.end(),
                                [&](const Entry& e) { return SameName(e.first, name); }),
                 entries_.end());
}

void HeaderMap::Remove(std::string_view name) {
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [&](const Entry& e) { return SameName(e.first, name); }),
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
