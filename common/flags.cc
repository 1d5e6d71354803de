#include "common/flags.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/flags/parse.h"

namespace meshpilot {

std::vector<std::string> ParseDashedFlags(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  std::vector<char*> argv_underscored;
  for (std::string& arg : args) {
    if (arg.starts_with("--")) {
      size_t end = std::min(arg.find('='), arg.size());
      std::replace(arg.begin() + 2, arg.begin() + end, '-', '_');
    }
    argv_underscored.push_back(arg.data());
  }
  std::vector<char*> rest =
      absl::ParseCommandLine(static_cast<int>(argv_underscored.size()), argv_underscored.data());
  return std::vector<std::string>(rest.begin() + std::min<size_t>(1, rest.size()), rest.end());
}

}  // namespace meshpilot
