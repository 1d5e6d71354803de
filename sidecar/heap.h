#pragma once

// meshproxy's heap. meshproxy allocates with jemalloc (sidecar/CMakeLists.txt): its per-thread
// caches and size classes take most of glibc's cost per request (blocks of several KiB, such
// as coroutine frames, are past glibc's per-thread cache). Sanitizer and fuzz builds keep the
// sanitizer's allocator, and then these fall back to glibc's malloc.

#include <cstdint>
#include <optional>

namespace meshpilot::sidecar {

// Envoy's server.memory_* gauges, in bytes.
struct HeapStats {
  uint64_t allocated = 0;      // in blocks the program holds (memory_allocated)
  uint64_t heap_size = 0;      // mapped by the allocator (memory_heap_size)
  uint64_t physical_size = 0;  // of those, resident (memory_physical_size)
};

// The heap's figures now; nullopt when the allocator does not report them (glibc).
std::optional<HeapStats> ReadHeapStats();

// Gives the free pages of the heap back to the kernel, with the blocks cached for the calling
// thread: for a worker left idle after a burst, so that its memory goes back to the few MiB it
// needs at rest.
void ReleaseFreeMemory();

}  // namespace meshpilot::sidecar
