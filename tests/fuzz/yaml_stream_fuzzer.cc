// Fuzzes the path untrusted config takes: YAML text -> objects (validation) -> MeshState ->
// translation for a sidecar and a proxyless gRPC client -> snapshot (consistency check).
// Whatever the input, nothing may crash, and every accepted state must translate into a
// consistent snapshot.

#include <cstdint>
#include <cstdlib>
#include <string>

#include "controlplane/cache/snapshot.h"
#include "controlplane/convert/mesh_state_builder.h"
#include "translator/translate.h"

namespace {

meshpilot::translator::ProxyInfo Proxy(bool grpc) {
  envoy::config::core::v3::Node node;
  node.set_id("sidecar~10.0.0.1~fuzz-1.default~default.svc.cluster.local");
  if (grpc) (*node.mutable_metadata()->mutable_fields())["GENERATOR"].set_string_value("grpc");
  return *meshpilot::translator::ParseProxyInfo(node);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace meshpilot;
  std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<convert::ParsedStream> parsed = convert::ParseYamlStream(text, "fuzz.yaml");
  if (!parsed.ok()) return 0;
  model::MeshState state = convert::BuildMeshState(parsed->objects, parsed->errors);
  for (bool grpc : {false, true}) {
    auto snapshot = cache::Snapshot::Build(translator::Translate(state, Proxy(grpc)), 1);
    // An inconsistent snapshot from accepted input is a translator bug.
    if (!snapshot.ok()) std::abort();
  }
  return 0;
}
