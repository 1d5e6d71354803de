// Everything meshpilot's translator produces for a sidecar (its golden files) must apply in
// meshproxy. A new translator feature that meshproxy cannot apply shows up here first.

#include <catch2/catch.hpp>
#include <google/protobuf/util/json_util.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sidecar/xds/xds_state.h"

namespace meshpilot::sidecar {
namespace {

namespace fs = std::filesystem;

envoy::service::discovery::v3::DiscoveryResponse Load(const fs::path& file) {
  envoy::service::discovery::v3::DiscoveryResponse response;
  response.set_version_info("golden");
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json list = nlohmann::json::parse(text.str());
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
      auto response = Load(dir / file);
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
