#pragma once

// Command-line flags for meshpilot's binaries (meshpilot, meshproxy, xds_loadgen).
namespace meshpilot {

// Parses absl flags spelled with dashes (`--config-dir`), as istiod's and Envoy's are; absl
// itself wants underscores. Only the flag name is rewritten, never its value.
void ParseDashedFlags(int argc, char** argv);

}  // namespace meshpilot
