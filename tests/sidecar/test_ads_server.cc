// A minimal ADS (state of the world) server for meshproxy's integration tests: it serves fixed
// Envoy resources read from DIR/{cds,eds,lds,rds}.json (JSON arrays of resources with "@type",
// the shape of the golden files), and re-reads them whenever DIR/version changes (its content
// is the new version_info). Every request and response is printed to stdout as one JSON line,
// so tests can wait for ACKs and NACKs and read their error_detail. DIR/hold.json, a JSON array
// of types ("rds", ...), holds back responses of those types until a version without them
// (a control plane slow to send them, for warming tests).
// DIR/fail.json, {"code": N, "message": "...", "when": "open" | "ack"}, read as each stream
// starts, ends that stream with that gRPC status: at once (a trailers-only response), or on
// its first ACK (trailers after responses). DIR/pad.json, {"eds": BYTES, ...}, adds to each
// response of those types a resource of that many bytes (a response over a client's limit).
//
//   sidecar_test_ads_server --resources DIR [--port 0]   (prints {"event":"listening","port":N})

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "envoy/service/discovery/v3/ads.grpc.pb.h"

namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using nlohmann::json;
using Stream = grpc::ServerReaderWriter<DiscoveryResponse, DiscoveryRequest>;

const std::vector<std::pair<std::string, std::string>> kTypes = {
    {"cds", "type.googleapis.com/envoy.config.cluster.v3.Cluster"},
    {"eds", "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"},
    {"lds", "type.googleapis.com/envoy.config.listener.v3.Listener"},
    {"rds", "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"}};

std::mutex out_mu;
void Log(const json& line) {
  std::lock_guard<std::mutex> lock(out_mu);
  std::cout << line.dump() << std::endl;
}

std::string ShortType(const std::string& url) {
  for (const auto& [name, type] : kTypes) {
    if (type == url) return name;
  }
  return url;
}

struct Resources {
  std::string version;
  std::set<std::string> held;  // type urls not to answer
  // type url -> (resource name, Any)
  std::map<std::string, std::vector<std::pair<std::string, google::protobuf::Any>>> by_type;
};

json ReadJson(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return nullptr;
  return json::parse(in, nullptr, false);
}

std::string NameOf(const json& resource) {
  if (resource.contains("name")) return resource["name"].get<std::string>();
  if (resource.contains("cluster_name")) return resource["cluster_name"].get<std::string>();
  return "";
}

bool Load(const std::filesystem::path& dir, Resources& out) {
  Resources loaded;
  std::ifstream version_file(dir / "version");
  std::getline(version_file, loaded.version);
  if (std::ifstream hold(dir / "hold.json"); hold) {
    json held = json::parse(hold, nullptr, false);
    if (!held.is_array()) {
      Log({{"event", "error"}, {"message", "hold.json is not a JSON array"}});
      return false;
    }
    for (const auto& [file, type] : kTypes) {
      if (std::find(held.begin(), held.end(), file) != held.end()) loaded.held.insert(type);
    }
  }
  for (const auto& [file, type] : kTypes) {
    std::ifstream in(dir / (file + ".json"));
    if (!in) continue;
    std::stringstream text;
    text << in.rdbuf();
    json list = json::parse(text.str(), nullptr, false);
    if (!list.is_array()) {
      Log({{"event", "error"}, {"message", file + ".json is not a JSON array"}});
      return false;
    }
    for (const json& resource : list) {
      google::protobuf::Any any;
      auto status = google::protobuf::util::JsonStringToMessage(resource.dump(), &any);
      if (!status.ok()) {
        Log({{"event", "error"}, {"message", file + ".json: " + status.ToString()}});
        return false;
      }
      loaded.by_type[type].emplace_back(NameOf(resource), any);
    }
  }
  out = std::move(loaded);
  return true;
}

class AdsService final
    : public envoy::service::discovery::v3::AggregatedDiscoveryService::Service {
 public:
  explicit AdsService(std::filesystem::path dir) : dir_(std::move(dir)) {}

  bool Reload() {
    Resources next;
    if (!Load(dir_, next)) return false;
    std::vector<std::shared_ptr<Connection>> connections;
    {
      std::lock_guard<std::mutex> lock(mu_);
      resources_ = std::make_shared<const Resources>(std::move(next));
      connections.assign(connections_.begin(), connections_.end());
    }
    Log({{"event", "loaded"}, {"version", resources_->version}});
    for (const auto& connection : connections) {
      for (const auto& [file, type] : kTypes) Send(*connection, type, /*only_if_subscribed=*/true);
    }
    return true;
  }

  grpc::Status StreamAggregatedResources(grpc::ServerContext* context, Stream* stream) override {
    const json fail = ReadJson(dir_ / "fail.json");
    std::optional<grpc::Status> fail_status;
    if (fail.is_object()) {
      fail_status = grpc::Status(static_cast<grpc::StatusCode>(fail.value("code", 2)),
                                 fail.value("message", ""));
      if (fail.value("when", "open") == "open") {
        Log({{"event", "failed"}, {"code", fail_status->error_code()}});
        return *fail_status;
      }
    }
    auto connection = std::make_shared<Connection>();
    connection->stream = stream;
    {
      std::lock_guard<std::mutex> lock(mu_);
      connection->id = ++next_id_;
      connections_.insert(connection);
    }
    Log({{"event", "connected"}, {"stream", connection->id}});
    DiscoveryRequest request;
    while (stream->Read(&request)) {
      json line{{"event", "request"},
                {"stream", connection->id},
                {"type", ShortType(request.type_url())},
                {"version", request.version_info()},
                {"nonce", request.response_nonce()},
                {"names", std::vector<std::string>(request.resource_names().begin(),
                                                   request.resource_names().end())}};
      if (request.has_node()) line["node"] = request.node().id();
      if (request.has_error_detail()) line["error"] = request.error_detail().message();
      Log(line);
      bool send = false;
      {
        std::lock_guard<std::mutex> lock(connection->mu);
        std::set<std::string> names(request.resource_names().begin(),
                                    request.resource_names().end());
        auto& subscription = connection->names[request.type_url()];
        send = request.response_nonce().empty() || subscription != names ||
               !connection->subscribed.contains(request.type_url());
        subscription = std::move(names);
        connection->subscribed.insert(request.type_url());
      }
      if (send) Send(*connection, request.type_url(), false);
      if (fail_status && !request.response_nonce().empty()) {
        Log({{"event", "failed"}, {"stream", connection->id}, {"code", fail_status->error_code()}});
        break;
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      connections_.erase(connection);
    }
    {
      // A push from Reload may still hold it: the stream must outlive that write.
      std::lock_guard<std::mutex> lock(connection->mu);
      connection->stream = nullptr;
    }
    Log({{"event", "disconnected"}, {"stream", connection->id}});
    return fail_status.value_or(grpc::Status::OK);
  }

 private:
  struct Connection {
    int id = 0;
    Stream* stream = nullptr;
    std::mutex mu;  // serializes writes and guards the subscriptions
    std::map<std::string, std::set<std::string>> names;
    std::set<std::string> subscribed;
    int nonce = 0;
  };

  void Send(Connection& connection, const std::string& type, bool only_if_subscribed) {
    std::shared_ptr<const Resources> resources;
    {
      std::lock_guard<std::mutex> lock(mu_);
      resources = resources_;
    }
    if (!resources) return;
    if (resources->held.contains(type)) {
      Log({{"event", "held"}, {"stream", connection.id}, {"type", ShortType(type)}});
      return;
    }
    std::lock_guard<std::mutex> lock(connection.mu);
    if (connection.stream == nullptr) return;
    if (only_if_subscribed && !connection.subscribed.contains(type)) return;
    const std::set<std::string>& names = connection.names[type];
    DiscoveryResponse response;
    response.set_type_url(type);
    response.set_version_info(resources->version);
    response.set_nonce(std::to_string(++connection.nonce));
    std::vector<std::string> sent;
    if (auto it = resources->by_type.find(type); it != resources->by_type.end()) {
      for (const auto& [name, any] : it->second) {
        if (!names.empty() && !names.contains(name)) continue;
        *response.add_resources() = any;
        sent.push_back(name);
      }
    }
    const json pad = ReadJson(dir_ / "pad.json");
    if (pad.is_object() && pad.contains(ShortType(type))) {
      google::protobuf::Any* padding = response.add_resources();
      padding->set_type_url("type.googleapis.com/google.protobuf.BytesValue");
      padding->set_value(std::string(pad[ShortType(type)].get<size_t>(), 'x'));
    }
    connection.stream->Write(response);
    Log({{"event", "response"},
         {"stream", connection.id},
         {"type", ShortType(type)},
         {"version", resources->version},
         {"nonce", response.nonce()},
         {"names", sent},
         {"bytes", response.ByteSizeLong()}});
  }

  std::filesystem::path dir_;
  std::mutex mu_;
  std::shared_ptr<const Resources> resources_;
  std::set<std::shared_ptr<Connection>> connections_;
  int next_id_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--resources") dir = argv[i + 1];
    if (flag == "--port") port = std::stoi(argv[i + 1]);
  }
  if (dir.empty()) {
    std::cerr << "usage: sidecar_test_ads_server --resources DIR [--port N]\n";
    return 2;
  }
  AdsService service(dir);
  if (!service.Reload()) return 1;
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                           &bound);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    Log({{"event", "error"}, {"message", "cannot listen on port " + std::to_string(port)}});
    return 1;
  }
  Log({{"event", "listening"}, {"port", bound}});
  auto version_path = std::filesystem::path(dir) / "version";
  std::error_code ec;
  auto last = std::filesystem::last_write_time(version_path, ec);
  std::string last_version;
  {
    std::ifstream in(version_path);
    std::getline(in, last_version);
  }
  // Poll the version file: a test writes the resources, then the version.
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto now = std::filesystem::last_write_time(version_path, ec);
    std::string version;
    std::ifstream in(version_path);
    std::getline(in, version);
    if (!ec && (now != last || version != last_version) && !version.empty()) {
      last = now;
      last_version = version;
      service.Reload();
    }
  }
}
