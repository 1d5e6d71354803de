#pragma once

// Request and response headers independent of the wire protocol, as the router sees them:
// lower-case names, in order, the pseudo-headers (":method", ":scheme", ":authority", ":path",
// ":status") first as HTTP/2 sends them. The HTTP/1.1 and HTTP/2 codecs convert to and from it,
// so routing, header mutations, retries and local replies are written once.

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace meshpilot::sidecar::http {

class HeaderMap {
 public:
  using Entry = std::pair<std::string, std::string>;

  HeaderMap() = default;
  HeaderMap(std::initializer_list<std::pair<std::string_view, std::string_view>> entries);

  // The first value of `name` (lower case).
  std::optional<std::string_view> Get(std::string_view name) const;
  std::string_view GetOr(std::string_view name, std::string_view fallback) const {
    return Get(name).value_or(fallback);
  }
  bool Has(std::string_view name) const { return Get(name).has_value(); }

  // Appends another value; a pseudo-header goes after the other pseudo-headers.
  void Add(std::string_view name, std::string_view value);
  // Replaces every value of `name` with one.
  void Set(std::string_view name, std::string_view value);
  void Remove(std::string_view name);
  // Removes the entries `predicate(entry)` holds for, in one pass.
  template <class Predicate>
  void RemoveIf(Predicate predicate) {
    entries_.erase(std::remove_if(entries_.begin(), entries_.end(), predicate), entries_.end());
  }

  void Reserve(size_t entries) { entries_.reserve(entries); }
  const std::vector<Entry>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }

  // ":status" as a number; 0 when absent or malformed.
  unsigned Status() const;

 private:
  std::vector<Entry> entries_;
};

}  // namespace meshpilot::sidecar::http
