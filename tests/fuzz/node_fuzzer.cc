// Fuzzes what a proxy sends about itself: any serialized Node must parse or be refused
// cleanly, never crash.

#include <cstdint>

#include "translator/proxy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  envoy::config::core::v3::Node node;
  if (!node.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto proxy = meshpilot::translator::ParseProxyInfo(node);
  if (proxy.ok()) (void)proxy->TranslationKey();
  return 0;
}
