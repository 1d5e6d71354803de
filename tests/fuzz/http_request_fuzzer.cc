// Fuzzes meshproxy's http_inspector, which reads the first bytes of plaintext connections on a
// listener with it: any bytes must give an answer (never a crash or a read past them), and once
// some bytes are judged HTTP, every longer input that starts with them must be judged the same.

#include <cstdint>
#include <cstdlib>
#include <span>

#include "sidecar/filters/http_inspector.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using meshpilot::sidecar::filters::HttpInspection;
  using meshpilot::sidecar::filters::InspectHttp;
  const std::span<const uint8_t> bytes(data, size);
  const HttpInspection whole = InspectHttp(bytes);
  for (size_t n = 0; n < size; ++n) {
    const HttpInspection prefix = InspectHttp(bytes.first(n));
    if (prefix != HttpInspection::kNeedMoreData && prefix != whole) std::abort();
  }
  return 0;
}
