#pragma once

// Request and response headers independent of the wire protocol, as the router sees them:
// lower-case names, in order, the pseudo-headers (":method", ":scheme", ":authority", ":path",
// ":status") first as HTTP/2 sends them. The HTTP/1.1 and HTTP/2 codecs convert to and from it,
// so routing, header mutations, retries and local replies are written once.
//
// Names, values and the entries themselves live in the map's own arena: blocks that only grow
// and never move, freed with the map (a name given to AddStatic, a literal or a table's, is kept
// as a view instead). A usual message head costs one allocation instead of one per long string,
// and a view that Get handed out stays valid, whatever is added or set later, until the map is
// destroyed or assigned to (a value that Set replaces keeps its old bytes). The span entries()
// returns is valid until the next change to the map.
// So a map lives for one message: one Set per request on a long-lived map would grow it
// without end.

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <span>
#include <string_view>
#include <utility>

namespace meshpilot::sidecar::http {

class HeaderMap {
 public:
  using Entry = std::pair<std::string_view, std::string_view>;

  HeaderMap() = default;
  HeaderMap(std::initializer_list<Entry> entries);
  HeaderMap(const HeaderMap& other);
  HeaderMap& operator=(const HeaderMap& other);
  HeaderMap(HeaderMap&& other) noexcept;
  HeaderMap& operator=(HeaderMap&& other) noexcept;
  ~HeaderMap();

  // The first value of `name` (lower case).
  std::optional<std::string_view> Get(std::string_view name) const;
  std::string_view GetOr(std::string_view name, std::string_view fallback) const {
    return Get(name).value_or(fallback);
  }
  bool Has(std::string_view name) const { return Get(name).has_value(); }

  // Appends another value; a pseudo-header goes after the other pseudo-headers.
  void Add(std::string_view name, std::string_view value);
  // As Add, for a `name` in lower case whose bytes outlive the map (a string literal, a table
  // of known names): the map keeps a view of it rather than a lower-cased copy.
  void AddStatic(std::string_view name, std::string_view value);
  // Replaces every value of `name` with one.
  void Set(std::string_view name, std::string_view value);
  void Remove(std::string_view name);
  // Removes the entries `predicate(entry)` holds for, in one pass.
  template <class Predicate>
  void RemoveIf(Predicate predicate) {
    size_ = static_cast<size_t>(std::remove_if(entries_, entries_ + size_, predicate) - entries_);
  }

  // Room for `entries` entries in all (as vector::reserve) and for `more_bytes` more of names
  // and values: in one allocation when the map has none yet.
  void Reserve(size_t entries, size_t more_bytes = 0);
  std::span<const Entry> entries() const { return {entries_, size_}; }
  bool empty() const { return size_ == 0; }

  // ":status" as a number; 0 when absent or malformed.
  unsigned Status() const;

 private:
  struct Block;
  // A copy of `text` in the arena (lower-cased when `lower`).
  std::string_view Store(std::string_view text, bool lower);
  char* Allocate(size_t size);
  // Moves the entries to room for `capacity` of them in the arena (the old room stays unused).
  void GrowEntries(size_t capacity);
  // Makes a block of `capacity` bytes the current one.
  Block* NewBlock(size_t capacity);
  void Free();
  // Inserts the entry of a stored (or static) name, in Add's place.
  void Insert(std::string_view name, std::string_view value);

  Entry* entries_ = nullptr;  // in the arena
  size_t size_ = 0;
  size_t entry_capacity_ = 0;
  Block* block_ = nullptr;  // the newest block; each links to the one before
  char* cursor_ = nullptr;  // free space in block_: [cursor_, end_)
  char* end_ = nullptr;
  size_t capacity_ = 0;  // of block_
};

}  // namespace meshpilot::sidecar::http
