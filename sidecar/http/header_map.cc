#include "sidecar/http/header_map.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace meshpilot::sidecar::http {

namespace {

bool IsPseudo(std::string_view name) { return !name.empty() && name.front() == ':'; }

// `lower` is a stored (lower-case) name; `name` may come in any case. No lower-case copy, and
// the usual lower-case argument costs a memcmp.
bool SameName(std::string_view lower, std::string_view name) {
  return lower.size() == name.size() &&
         (lower == name || absl::EqualsIgnoreCase(absl::string_view(lower.data(), lower.size()),
                                                  absl::string_view(name.data(), name.size())));
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
  // Pseudo-headers stay first, in the order they came; the rest are appended.
  auto at = entries_.end();
  if (IsPseudo(name)) {
    at = std::find_if(entries_.begin(), entries_.end(),
                      [](const Entry& e) { return !IsPseudo(e.first); });
  }
  Entry& entry = *entries_.emplace(at, std::piecewise_construct, std::forward_as_tuple(name),
                                   std::forward_as_tuple(value));
  for (char& c : entry.first) c = absl::ascii_tolower(static_cast<unsigned char>(c));
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
  RemoveIf([&](const Entry& e) { return SameName(e.first, name); });
}

unsigned HeaderMap::Status() const {
  const std::optional<std::string_view> value = Get(":status");
  if (!value || value->empty() || value->size() > 3) return 0;
  unsigned status = 0;
  for (char c : *value) {
    if (c < '0' || c > '9') return 0;
    status = status * 10 + static_cast<unsigned>(c - '0');
  }
  return status;
}

}  // namespace meshpilot::sidecar::http
