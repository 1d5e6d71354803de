// Everything meshpilot's translator produces for a sidecar (its golden files) must apply in
// meshproxy. A new translator feature that meshproxy cannot apply shows up here first.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <google/protobuf/util/json_util.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sidecar/xds/xds_state.h"

namespace meshpilot::sidecar {
namespace {

namespace fs = std::filesystem;

// The certificate files the golden DestinationRules name (/etc/certs/...), made by the openssl
// CLI: meshproxy reads them when it applies a cluster, as Envoy does.
struct GoldenCertificates {
  fs::path dir = fs::temp_directory_path() / ("meshproxy-golden-certs-" + std::to_string(::getpid()));
  GoldenCertificates() {
    fs::create_directories(dir);
    const std::string script =
        "cd " + dir.string() + " && touch index.txt && "
        "printf '[ca]\\ndefault_ca=golden\\n[golden]\\ndatabase=index.txt\\ndefault_md=sha256\\n"
        "default_crl_days=1\\n' > ca.cnf && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
        "-subj /CN=golden -keyout key.pem -out root-cert.pem >/dev/null 2>&1 && "
        "cp root-cert.pem cert-chain.pem && "
        "openssl ca -config ca.cnf -gencrl -keyfile key.pem -cert root-cert.pem -out crl.pem "
        ">/dev/null 2>&1";
    REQUIRE(std::system(script.c_str()) == 0);
  }
  ~GoldenCertificates() { fs::remove_all(dir); }
};

envoy::service::discovery::v3::DiscoveryResponse Load(const fs::path& file,
                                                      const fs::path& certificates) {
  envoy::service::discovery::v3::DiscoveryResponse response;
  response.set_version_info("golden");
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  std::string json = text.str();
  for (size_t at = 0; (at = json.find("\"/etc/certs/", at)) != std::string::npos;) {
    json.replace(at + 1, std::string_view("/etc/certs/").size(), certificates.string() + "/");
  }
  nlohmann::json list = nlohmann::json::parse(json);
  for (const auto& resource : list) {
    auto status = google::protobuf::util::JsonStringToMessage(resource.dump(),
                                                              response.add_resources());
    INFO(file.string() << ": " << status.ToString());
    REQUIRE(status.ok());
  }
  return response;
}

TEST_CASE("golden: meshproxy applies every sidecar resource meshpilot generates") {
  const fs::path golden = fs::path(MESHPILOT_SOURCE_DIR) / "tests" / "golden";
  const GoldenCertificates certificates;
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(golden)) {
    const fs::path dir = entry.path() / "expected" / "sidecar";
    if (!fs::exists(dir / "lds.json")) continue;
    ++cases;
    StatsStore stats;
    xds::XdsState state(stats);
    // In push order, as a control plane sends them.
    for (auto [type, file] : {std::pair{XdsType::kCluster, "cds.json"},
                              std::pair{XdsType::kEndpoint, "eds.json"},
                              std::pair{XdsType::kListener, "lds.json"},
                              std::pair{XdsType::kRoute, "rds.json"}}) {
      if (!fs::exists(dir / file)) continue;
      auto response = Load(dir / file, certificates.dir);
      response.set_type_url(TypeUrl(type));
      std::string error = state.Apply(type, response);
      INFO(entry.path().filename().string() << "/" << file << ": " << error);
      CHECK(error.empty());
    }
    CHECK(state.Build()->initialized);
  }
  CHECK(cases > 0);
}

}  // namespace
}  // namespace meshpilot::sidecar
