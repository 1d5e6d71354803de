#pragma once

// `meshpilot validate FILE|DIR...`: the validation meshpilot applies when it serves, run
// offline over YAML files (as `istioctl analyze` does for Istio): every document is parsed and
// validated on its own (errors: the object would be rejected), then the accepted objects are
// assembled into a mesh and checked together by the translator (warnings: the object would be
// served, but not all of it is honoured, or it refers to something missing).

#include <string>
#include <vector>

#include "controlplane/model/mesh_state.h"

namespace meshpilot::validate {

struct Report {
  size_t files = 0;
  size_t objects = 0;                       // documents accepted
  std::vector<model::ConfigError> errors;   // rejected documents, unreadable files
  std::vector<model::ConfigError> warnings; // origin: the document the warning is about
};

// Reads `paths` (files, or folders whose *.yaml / *.yml files are read, not recursively).
Report ValidatePaths(const std::vector<std::string>& paths);

// One line per finding, `error: ORIGIN: KIND NS/NAME: MESSAGE` (warnings with Istio's analyzer
// code where there is one: `warning [IST0101]: ...`), then a summary line.
std::string FormatReport(const Report& report);

}  // namespace meshpilot::validate
