// The heap (sidecar/heap.h): jemalloc's figures, and ReleaseFreeMemory giving freed pages back.

#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <vector>

#include "sidecar/heap.h"

namespace meshpilot::sidecar {
namespace {

TEST_CASE("the heap reports what is allocated, and gives free pages back when asked") {
  std::optional<HeapStats> before = ReadHeapStats();
  if (!before) {
    WARN("this build allocates with the sanitizer's malloc, which reports nothing");
    return;
  }
  CHECK(before->allocated > 0);
  CHECK(before->heap_size >= before->physical_size);

  // 32 MiB in blocks of 8 KiB (not one huge block, which jemalloc unmaps as soon as it is
  // freed), every page touched.
  constexpr size_t kBlock = 8192, kBlocks = 4096, kTotal = kBlock * kBlocks;
  std::vector<std::unique_ptr<char[]>> blocks;
  for (size_t i = 0; i < kBlocks; ++i) {
    blocks.emplace_back(new char[kBlock]);
    std::memset(blocks.back().get(), 1, kBlock);
  }
  // (Figures are jemalloc's snapshots, a little behind what its per-thread caches hold.)
  const HeapStats held = *ReadHeapStats();
  CHECK(held.allocated >= before->allocated + kTotal * 3 / 4);
  CHECK(held.physical_size >= before->physical_size + kTotal * 3 / 4);
  CHECK(held.heap_size >= held.physical_size);

  blocks.clear();
  const HeapStats freed = *ReadHeapStats();
  CHECK(freed.allocated < held.allocated - kTotal / 2);
  // Freed but still resident: jemalloc keeps dirty pages for a while, for the next burst.
  CHECK(freed.physical_size > held.physical_size - kTotal / 2);

  ReleaseFreeMemory();
  const HeapStats released = *ReadHeapStats();
  CHECK(released.physical_size < held.physical_size - kTotal / 2);
}

}  // namespace
}  // namespace meshpilot::sidecar
