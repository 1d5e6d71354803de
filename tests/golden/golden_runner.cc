// Golden tests for the translator: tests/golden/<case>/input.yaml in, one JSON file per proxy
// kind and xDS type out (expected/<proxy>/<type>.json). With UPDATE_GOLDEN=1 the expected
// files are rewritten instead of compared; review their diff like code.
//
// Usage: golden_runner CASE_DIR

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "controlplane/cache/snapshot.h"
#include "controlplane/convert/mesh_state_builder.h"
#include "google/protobuf/util/json_util.h"
#include "translator/translate.h"

namespace meshpilot {
namespace {

namespace fs = std::filesystem;

// The proxies every case is translated for. A case that wants them to serve something (inbound
// listeners, AuthorizationPolicies) gives them endpoints and a Pod with labels at their IP.
struct GoldenProxy {
  const char* name;
  const char* node_id;
  bool grpc;
};
constexpr GoldenProxy kProxies[] = {
    {"sidecar", "sidecar~10.0.0.100~client-1.default~default.svc.cluster.local", false},
    {"grpc", "sidecar~10.0.0.101~grpc-client-1.default~default.svc.cluster.local", true},
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A JSON array of the resources of one type, in name order, pretty-printed.
std::string RenderType(const cache::Snapshot& snapshot, cache::ResourceType type) {
  std::string out = "[";
  bool first = true;
  for (const auto& [name, resource] : snapshot.Resources(type)) {
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.preserve_proto_field_names = true;
    auto status = google::protobuf::util::MessageToJsonString(resource->body, &json, options);
    if (!status.ok()) json = "\"cannot render: " + status.ToString() + "\"";
    out += (first ? "\n" : ",\n") + json;
    first = false;
  }
  return out + "]\n";
}

// The first line where the two texts differ, for a readable failure.
std::string FirstDifference(const std::string& expected, const std::string& actual) {
  std::istringstream a(expected), b(actual);
  std::string la, lb;
  for (int line = 1;; ++line) {
    bool more_a = static_cast<bool>(std::getline(a, la));
    bool more_b = static_cast<bool>(std::getline(b, lb));
    if (!more_a && !more_b) return "";
    if (la != lb || more_a != more_b) {
      return "line " + std::to_string(line) + ":\n  expected: " + (more_a ? la : "<end>") +
             "\n  actual:   " + (more_b ? lb : "<end>");
    }
  }
}

int Run(const fs::path& case_dir) {
  const fs::path input = case_dir / "input.yaml";
  auto parsed = convert::ParseYamlStream(ReadFile(input), "input.yaml");
  if (!parsed.ok()) {
    std::cerr << input << ": " << parsed.status().ToString() << "\n";
    return 1;
  }
  model::MeshState state = convert::BuildMeshState(parsed->objects, parsed->errors);
  const bool update = std::getenv("UPDATE_GOLDEN") != nullptr;
  int failures = 0;
  for (const GoldenProxy& golden : kProxies) {
    envoy::config::core::v3::Node node;
    node.set_id(golden.node_id);
    auto& metadata = *node.mutable_metadata()->mutable_fields();
    if (golden.grpc) metadata["GENERATOR"].set_string_value("grpc");
    // As istio-agent does, the proxy sends its Pod's labels: a case gives the proxy labels
    // (for AuthorizationPolicy selectors, ...) with a Pod of the proxy's IP.
    const std::string ip = translator::ParseProxyInfo(node)->ip;
    for (const auto& [key, pod] : state.pods) {
      if (pod.ip != ip) continue;
      for (const auto& [name, value] : pod.meta.labels) {
        (*metadata["LABELS"].mutable_struct_value()->mutable_fields())[name].set_string_value(
            value);
      }
    }
    translator::ProxyInfo proxy = *translator::ParseProxyInfo(node);
    auto snapshot = cache::Snapshot::Build(translator::Translate(state, proxy), 1);
    if (!snapshot.ok()) {
      std::cerr << golden.name << ": inconsistent snapshot: " << snapshot.status().ToString()
                << "\n";
      ++failures;
      continue;
    }
    for (cache::ResourceType type : cache::kPushOrder) {
      const fs::path expected_path =
          case_dir / "expected" / golden.name / (std::string(cache::ShortName(type)) + ".json");
      const std::string actual = RenderType(**snapshot, type);
      if (update) {
        fs::create_directories(expected_path.parent_path());
        std::ofstream(expected_path) << actual;
        continue;
      }
      if (!fs::exists(expected_path)) {
        std::cerr << expected_path << ": missing (run with UPDATE_GOLDEN=1)\n";
        ++failures;
        continue;
      }
      const std::string expected = ReadFile(expected_path);
      if (expected != actual) {
        std::cerr << expected_path << " differs at " << FirstDifference(expected, actual)
                  << "\n";
        ++failures;
      }
    }
  }
  // Rejected documents and the translator's warnings are part of the expectation too:
  // validation must not drift silently.
  auto compare_findings = [&](const std::vector<model::ConfigError>& findings, const char* file) {
    const fs::path path = case_dir / "expected" / file;
    std::string text;
    for (const model::ConfigError& finding : findings) {
      text += finding.origin + " " + finding.kind + " " + finding.namespace_ + "/" + finding.name +
              ": " + finding.message + "\n";
    }
    if (update) {
      std::ofstream(path) << text;
    } else if (ReadFile(path) != text) {
      std::cerr << path << " differs at " << FirstDifference(ReadFile(path), text) << "\n";
      ++failures;
    }
  };
  compare_findings(state.errors, "errors.txt");
  compare_findings(translator::CheckConfig(state), "warnings.txt");
  std::cout << case_dir.filename().string() << ": "
            << (update ? "updated" : failures == 0 ? "ok" : "FAILED") << "\n";
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace meshpilot

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: golden_runner CASE_DIR\n";
    return 2;
  }
  return meshpilot::Run(argv[1]);
}
