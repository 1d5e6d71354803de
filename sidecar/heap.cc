#include "sidecar/heap.h"

#ifdef MESHPROXY_JEMALLOC
#include <jemalloc/jemalloc.h>
#else
#include <malloc.h>
#endif

namespace meshpilot::sidecar {

#ifdef MESHPROXY_JEMALLOC

namespace {

uint64_t ReadSize(const char* name) {
  size_t value = 0;
  size_t length = sizeof(value);
  if (mallctl(name, &value, &length, nullptr, 0) != 0) return 0;
  return value;
}

}  // namespace

std::optional<HeapStats> ReadHeapStats() {
  // jemalloc's stats are a snapshot, taken again when the epoch advances.
  uint64_t epoch = 1;
  size_t length = sizeof(epoch);
  if (mallctl("epoch", &epoch, &length, &epoch, length) != 0) return std::nullopt;
  // The heap, as Envoy counts tcmalloc's: what the allocator holds mapped, its free pages not
  // yet given back included (stats.mapped leaves out the extents that only hold those).
  static_assert(MALLCTL_ARENAS_ALL == 4096, "the names below say every arena by this index");
  const uint64_t free_pages = ReadSize("stats.arenas.4096.pdirty") +
                              ReadSize("stats.arenas.4096.pmuzzy");
  return HeapStats{.allocated = ReadSize("stats.allocated"),
                   .heap_size = ReadSize("stats.mapped") + free_pages * ReadSize("arenas.page"),
                   .physical_size = ReadSize("stats.resident")};
}

void ReleaseFreeMemory() {
  mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
  mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
}

#else

std::optional<HeapStats> ReadHeapStats() { return std::nullopt; }

void ReleaseFreeMemory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

#endif

}  // namespace meshpilot::sidecar
