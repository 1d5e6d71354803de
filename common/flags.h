#pragma once

// Command-line flags for meshpilot's binaries (meshpilot, meshproxy, xds_loadgen).
#include <string>
#include <vector>

namespace meshpilot {

// Parses absl flags spelled with dashes (`--config-dir`), as istiod's and Envoy's are; absl
// itself wants underscores. Only the flag name is rewritten, never its value. Returns the
// positional arguments (without the program name).
std::vector<std::string> ParseDashedFlags(int argc, char** argv);

}  // namespace meshpilot
