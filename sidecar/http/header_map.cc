#include "sidecar/http/header_map.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

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

// The arena's blocks: a header, then the bytes.
struct HeaderMap::Block {
  Block* previous;
};

namespace {

// A usual head's names and values (Istio's peer metadata goes to a second block); with 16
// entries, the first block is 1 KiB, one of the small sizes the allocator's per-thread cache keeps.
constexpr size_t kFirstBlock = 496;
constexpr size_t kMaxBlock = 16 * 1024;

// Lower-cases the ASCII letters of the eight bytes at `at`; other bytes stay as they are.
void LowerAscii8(char* at) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  uint64_t word;
  std::memcpy(&word, at, 8);
  // Per byte b < 0x80: the top bit of (b + 0x80 - 'A') says b >= 'A', of (b + 0x80 - 'Z' - 1)
  // that b > 'Z'; bytes >= 0x80 are left out by ~word.
  const uint64_t seven = word & (0x7f * kOnes);
  const uint64_t upper =
      ((seven + (0x80 - 'A') * kOnes) ^ (seven + (0x80 - 'Z' - 1) * kOnes)) & ~word & (0x80 * kOnes);
  word |= upper >> 2;  // 0x80 >> 2 is 0x20, the case bit
  std::memcpy(at, &word, 8);
}

// Lower-cases ASCII letters in place, eight bytes at a time.
void LowerAscii(char* text, size_t size) {
  if (size < 8) {
    for (size_t i = 0; i < size; ++i) text[i] = absl::ascii_tolower(static_cast<unsigned char>(text[i]));
    return;
  }
  for (size_t i = 0; i + 8 <= size; i += 8) LowerAscii8(text + i);
  // The last eight bytes again, overlapping: lower-casing twice changes nothing.
  if (size % 8 != 0) LowerAscii8(text + size - 8);
}

}  // namespace

HeaderMap::HeaderMap(std::initializer_list<Entry> entries) {
  for (const auto& [name, value] : entries) Add(name, value);
}

HeaderMap::HeaderMap(const HeaderMap& other) { *this = other; }

HeaderMap& HeaderMap::operator=(const HeaderMap& other) {
  if (this == &other) return *this;
  Free();
  size_t bytes = 0;
  for (const auto& [name, value] : other.entries()) bytes += name.size() + value.size();
  Reserve(other.size_, bytes);
  for (const auto& [name, value] : other.entries()) {
    std::construct_at(entries_ + size_++, Store(name, false), Store(value, false));
  }
  return *this;
}

HeaderMap::HeaderMap(HeaderMap&& other) noexcept
    : entries_(std::exchange(other.entries_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      entry_capacity_(std::exchange(other.entry_capacity_, 0)),
      block_(std::exchange(other.block_, nullptr)),
      cursor_(std::exchange(other.cursor_, nullptr)),
      end_(std::exchange(other.end_, nullptr)),
      capacity_(std::exchange(other.capacity_, 0)) {}

HeaderMap& HeaderMap::operator=(HeaderMap&& other) noexcept {
  if (this == &other) return *this;
  Free();
  entries_ = std::exchange(other.entries_, nullptr);
  size_ = std::exchange(other.size_, 0);
  entry_capacity_ = std::exchange(other.entry_capacity_, 0);
  block_ = std::exchange(other.block_, nullptr);
  cursor_ = std::exchange(other.cursor_, nullptr);
  end_ = std::exchange(other.end_, nullptr);
  capacity_ = std::exchange(other.capacity_, 0);
  return *this;
}

HeaderMap::~HeaderMap() { Free(); }

void HeaderMap::Free() {
  while (block_ != nullptr) {
    Block* previous = block_->previous;
    ::operator delete(block_);
    block_ = previous;
  }
  entries_ = nullptr;
  size_ = entry_capacity_ = 0;
  cursor_ = end_ = nullptr;
  capacity_ = 0;
}

void HeaderMap::Reserve(size_t entries, size_t more_bytes) {
  const bool grow = entries > entry_capacity_;
  // With room to align the entries.
  const size_t entry_bytes = grow ? entries * sizeof(Entry) + alignof(Entry) : 0;
  if (entry_bytes + more_bytes > static_cast<size_t>(end_ - cursor_)) {
    NewBlock(entry_bytes + (block_ == nullptr ? std::max(more_bytes, kFirstBlock) : more_bytes));
  }
  if (grow) GrowEntries(entries);
}

void HeaderMap::GrowEntries(size_t capacity) {
  const size_t bytes = capacity * sizeof(Entry);
  const size_t misaligned = reinterpret_cast<uintptr_t>(cursor_) % alignof(Entry);
  const size_t pad = misaligned == 0 ? 0 : alignof(Entry) - misaligned;
  if (block_ == nullptr || pad + bytes > static_cast<size_t>(end_ - cursor_)) {
    // A block's bytes start aligned: they follow the Block header in operator new's memory.
    NewBlock(bytes + (block_ == nullptr ? kFirstBlock : std::min(2 * capacity_, kMaxBlock)));
  } else {
    cursor_ += pad;
  }
  // Entries are constructed as they are added (Insert), not here.
  auto* room = reinterpret_cast<Entry*>(cursor_);
  cursor_ += bytes;
  std::uninitialized_copy(entries_, entries_ + size_, room);
  entries_ = room;
  entry_capacity_ = capacity;
}

HeaderMap::Block* HeaderMap::NewBlock(size_t capacity) {
  auto* block = static_cast<Block*>(::operator new(sizeof(Block) + capacity));
  block->previous = block_;
  block_ = block;
  cursor_ = reinterpret_cast<char*>(block + 1);
  end_ = cursor_ + capacity;
  capacity_ = capacity;
  return block;
}

char* HeaderMap::Allocate(size_t size) {
  if (size > static_cast<size_t>(end_ - cursor_)) {
    // A new block; the old ones stay, so views into them stay valid. Blocks double, up to
    // kMaxBlock; a value larger than half the next one gets a block of its own, kept behind
    // the current block, whose room stays for what comes next.
    const size_t next = block_ == nullptr ? kFirstBlock : std::min(2 * capacity_, kMaxBlock);
    if (block_ != nullptr && size > next / 2) {
      auto* own = static_cast<Block*>(::operator new(sizeof(Block) + size));
      own->previous = block_->previous;
      block_->previous = own;
      return reinterpret_cast<char*>(own + 1);
    }
    NewBlock(std::max(size, next));
  }
  char* at = cursor_;
  cursor_ += size;
  return at;
}

std::string_view HeaderMap::Store(std::string_view text, bool lower) {
  // Not a null data(): values go to memcpy and to nghttp2.
  static constexpr char kEmpty[] = "";
  if (text.empty()) return {kEmpty, 0};
  char* at = Allocate(text.size());
  std::memcpy(at, text.data(), text.size());
  if (lower) LowerAscii(at, text.size());
  return {at, text.size()};
}

std::optional<std::string_view> HeaderMap::Get(std::string_view name) const {
  for (const Entry& entry : entries()) {
    if (entry.first == name) return std::string_view(entry.second);
  }
  return std::nullopt;
}

void HeaderMap::Add(std::string_view name, std::string_view value) {
  Insert(Store(name, true), value);
}

void HeaderMap::AddStatic(std::string_view name, std::string_view value) { Insert(name, value); }

void HeaderMap::Insert(std::string_view name, std::string_view value) {
  if (size_ == entry_capacity_) GrowEntries(std::max<size_t>(8, 2 * entry_capacity_));
  // Pseudo-headers stay first, in the order they came; the rest are appended.
  Entry* const end = entries_ + size_;
  Entry* at = end;
  if (IsPseudo(name)) {
    at = std::find_if(entries_, end, [](const Entry& e) { return !IsPseudo(e.first); });
  }
  std::construct_at(end);
  std::move_backward(at, end, end + 1);
  *at = Entry(name, Store(value, false));
  ++size_;
}

void HeaderMap::Set(std::string_view name, std::string_view value) {
  Entry* const end = entries_ + size_;
  Entry* it = std::find_if(entries_, end, [&](const Entry& e) { return SameName(e.first, name); });
  if (it == end) {
    Add(name, value);
    return;
  }
  it->second = Store(value, false);
  size_ = static_cast<size_t>(
      std::remove_if(it + 1, end, [&](const Entry& e) { return SameName(e.first, name); }) -
      entries_);
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
