// Fuzzes meshproxy's tls_inspector, which reads the first bytes of every connection on a
// listener with it: any bytes must give an answer (never a crash or a read past them), and a
// shorter prefix of a ClientHello must never be judged differently from "need more data" once
// the whole is a ClientHello.

#include <cstdint>
#include <cstdlib>
#include <span>

#include "sidecar/filters/tls_inspector.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using meshpilot::sidecar::filters::InspectClientHello;
  using Result = meshpilot::sidecar::filters::TlsInspection::Result;
  const std::span<const uint8_t> bytes(data, size);
  const auto whole = InspectClientHello(bytes);
  if (whole.result == Result::kClientHello && size > 0) {
    const auto shorter = InspectClientHello(bytes.first(size / 2));
    if (shorter.result != Result::kNeedMoreData && shorter.result != Result::kClientHello) {
      std::abort();
    }
  }
  return 0;
}
