#include "tests/xds/ads_test_client.h"

#include <functional>
#include <stdexcept>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "spdlog/spdlog.h"

namespace meshpilot::testing {
namespace {

std::string PortName(model::Protocol protocol) {
  switch (protocol) {
    case model::Protocol::kHttp: return "http";
    case model::Protocol::kHttp2: return "http2";
    case model::Protocol::kGrpc: return "grpc";
    case model::Protocol::kUdp: return "udp";
    default: return "tcp";
  }
}

std::vector<model::Endpoint> MakeEndpoints(const std::string& name, uint32_t port,
                                           const std::string& port_name, int count,
                                           size_t index) {
  std::vector<model::Endpoint> endpoints;
  for (int j = 0; j < count; ++j) {
    model::Endpoint endpoint;
    endpoint.address = absl::StrCat("10.", 1 + j, ".", index / 256 % 256, ".", index % 256);
    endpoint.port = port;
    endpoint.port_name = port_name;
    endpoint.pod_name = absl::StrCat(name, "-", j);
    endpoint.namespace_ = "default";
    endpoint.service_account = name;
    endpoint.labels = {{"app", name}};
    endpoint.locality.region = "us-east1";
    endpoint.locality.zone = j % 2 == 0 ? "us-east1-a" : "us-east1-b";
    endpoints.push_back(std::move(endpoint));
  }
  return endpoints;
}

void Insert(model::MeshState& mesh, const std::string& name, uint32_t port,
            model::Protocol protocol, int endpoints, const std::string& cluster_ip,
            size_t index) {
  model::Service service;
  service.meta.name = name;
  service.meta.namespace_ = "default";
  service.meta.labels = {{"app", name}};
  service.meta.resource_version = "1";
  service.cluster_ip = cluster_ip;
  service.selector = {{"app", name}};
  std::string port_name = PortName(protocol);
  model::ServicePort service_port;
  service_port.name = port_name;
  service_port.port = port;
  service_port.protocol = protocol;
  service_port.target_port = port;
  service.ports.push_back(std::move(service_port));
  std::string key = service.meta.Key();
  mesh.endpoints[key] = MakeEndpoints(name, port, port_name, endpoints, index);
  mesh.services[key] = std::move(service);
}

}  // namespace

envoy::config::core::v3::Node MakeNode(const std::string& id, const std::string& generator) {
  envoy::config::core::v3::Node node;
  node.set_id(id);
  node.set_cluster("app.default");
  auto& fields = *node.mutable_metadata()->mutable_fields();
  fields["NAMESPACE"].set_string_value("default");
  if (!generator.empty()) fields["GENERATOR"].set_string_value(generator);
  return node;
}

model::MeshState MakeMesh(int services, int endpoints_per_service) {
  model::MeshState mesh;
  for (int i = 0; i < services; ++i) {
    Insert(mesh, absl::StrCat("svc-", i), 8080, model::Protocol::kHttp, endpoints_per_service,
           absl::StrCat("10.96.", i / 256 % 256, ".", i % 256), i);
  }
  return mesh;
}

void AddService(model::MeshState& mesh, const std::string& name, uint32_t port,
                model::Protocol protocol, int endpoints, const std::string& cluster_ip) {
  // Addresses depend on the name only, so adding the same service twice yields equal
  // endpoints.
  Insert(mesh, name, port, protocol, endpoints, cluster_ip,
         200 * 256 + std::hash<std::string>{}(name) % 256);
}

std::string ClusterName(const std::string& service, uint32_t port) {
  return absl::StrCat("outbound|", port, "||", service, ".default.svc.cluster.local");
}

std::vector<std::string> ResourceNames(const DiscoveryResponse& response) {
  std::vector<std::string> names;
  for (const google::protobuf::Any& any : response.resources()) {
    envoy::config::cluster::v3::Cluster cluster;
    envoy::config::endpoint::v3::ClusterLoadAssignment assignment;
    envoy::config::listener::v3::Listener listener;
    envoy::config::route::v3::RouteConfiguration route;
    if (any.UnpackTo(&cluster)) {
      names.push_back(cluster.name());
    } else if (any.UnpackTo(&assignment)) {
      names.push_back(assignment.cluster_name());
    } else if (any.UnpackTo(&listener)) {
      names.push_back(listener.name());
    } else if (any.UnpackTo(&route)) {
      names.push_back(route.name());
    } else {
      names.push_back("<unknown " + any.type_url() + ">");
    }
  }
  return names;
}

// --- AdsTestServer ---------------------------------------------------------------------

AdsTestServer::AdsTestServer() : ads_(cache_, metrics_) {
  spdlog::set_level(spdlog::level::err);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(&ads_);
  builder.SetMaxSendMessageSize(-1);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    throw std::runtime_error("cannot start the ADS test server on 127.0.0.1:0");
  }
}

AdsTestServer::~AdsTestServer() {
  ads_.CloseAll();
  // Streams whose clients stopped reading cannot flush their status: cut them off.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_->Wait();
}

void AdsTestServer::SetState(model::MeshState state) {
  state.version = ++next_version_;
  cache_.SetState(std::make_shared<const model::MeshState>(std::move(state)));
  synced_ = true;
  ads_.PushAll();
}

std::string AdsTestServer::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::optional<xds::StreamStatus> AdsTestServer::StreamOf(const std::string& node_id) const {
  // A proxy that reconnected may briefly have two streams: the newest one is its current one.
  std::optional<xds::StreamStatus> newest;
  uint64_t newest_counter = 0;
  for (xds::StreamStatus& stream : ads_.Streams()) {
    if (stream.proxy.id != node_id) continue;
    std::string_view id = stream.connection_id;
    uint64_t counter = std::stoull(std::string(id.substr(id.rfind('-') + 1)));
    if (!newest || counter > newest_counter) {
      newest_counter = counter;
      newest = std::move(stream);
    }
  }
  return newest;
}

bool AdsTestServer::WaitForStream(const std::function<bool(const xds::StreamStatus&)>& condition,
                                  const std::string& node_id,
                                  std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    std::optional<xds::StreamStatus> stream = StreamOf(node_id);
    if (stream && condition(*stream)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// --- AdsTestClient ---------------------------------------------------------------------

AdsTestClient::AdsTestClient(int port, AdsClientOptions options) : options_(std::move(options)) {
  grpc::ChannelArguments args;
  // Each client gets its own HTTP/2 connection, as separate proxies would.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(-1);
  if (!options_.read_responses) {
    // Small, fixed windows: a client that does not read stalls the server's writes quickly.
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);
  }
  channel_ = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                       grpc::InsecureChannelCredentials(), args);
  stub_ = envoy::service::discovery::v3::AggregatedDiscoveryService::NewStub(channel_);
  stream_ = stub_->StreamAggregatedResources(&context_);
  if (options_.read_responses) reader_ = std::thread([this] { ReadLoop(); });
}

AdsTestClient::~AdsTestClient() {
  context_.TryCancel();
  if (reader_.joinable()) {
    reader_.join();
  } else {
    std::lock_guard lock(write_mu_);
    stream_->Finish();
  }
}

void AdsTestClient::ReadLoop() {
  DiscoveryResponse response;
  while (stream_->Read(&response)) {
    std::lock_guard lock(mu_);
    responses_.push_back(response);
    cv_.notify_all();
  }
  grpc::Status status;
  {
    std::lock_guard lock(write_mu_);
    status = stream_->Finish();
  }
  std::lock_guard lock(mu_);
  end_status_ = status;
  cv_.notify_all();
}

bool AdsTestClient::Send(const std::string& type_url, const std::vector<std::string>& names,
                         const std::string& version, const std::string& nonce,
                         std::optional<std::string> error_detail) {
  DiscoveryRequest request;
  request.set_type_url(type_url);
  for (const std::string& name : names) request.add_resource_names(name);
  request.set_version_info(version);
  request.set_response_nonce(nonce);
  if (error_detail) {
    request.mutable_error_detail()->set_code(3);  // INVALID_ARGUMENT, as Envoy reports it
    request.mutable_error_detail()->set_message(*error_detail);
  }
  std::lock_guard lock(write_mu_);
  {
    std::lock_guard state_lock(mu_);
    if (end_status_) return false;
  }
  if (!node_sent_) {
    *request.mutable_node() = options_.node;
    node_sent_ = true;
  }
  subscriptions_[type_url] = names;
  if (!error_detail && !nonce.empty()) acked_versions_[type_url] = version;
  return stream_->Write(request);
}

bool AdsTestClient::Ack(const DiscoveryResponse& response,
                        std::optional<std::vector<std::string>> names) {
  std::vector<std::string> subscription;
  if (names) {
    subscription = *std::move(names);
  } else {
    std::lock_guard lock(write_mu_);
    subscription = subscriptions_[response.type_url()];
  }
  return Send(response.type_url(), subscription, response.version_info(), response.nonce());
}

bool AdsTestClient::Nack(const DiscoveryResponse& response, const std::string& message) {
  std::vector<std::string> subscription;
  std::string previous;
  {
    std::lock_guard lock(write_mu_);
    subscription = subscriptions_[response.type_url()];
    previous = acked_versions_[response.type_url()];
  }
  // A NACK carries the last version the client accepted, not the rejected one.
  return Send(response.type_url(), subscription, previous, response.nonce(), message);
}

std::optional<DiscoveryResponse> AdsTestClient::Read(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return !responses_.empty() || end_status_; });
  if (responses_.empty()) return std::nullopt;
  DiscoveryResponse response = std::move(responses_.front());
  responses_.pop_front();
  return response;
}

bool AdsTestClient::ExpectNothing(std::chrono::milliseconds quiet) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, quiet, [this] { return !responses_.empty(); });
  return responses_.empty();
}

std::optional<grpc::Status> AdsTestClient::WaitForEnd(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return end_status_.has_value(); });
  return end_status_;
}

std::string AdsTestClient::AckedVersion(const std::string& type_url) const {
  std::lock_guard lock(write_mu_);
  auto it = acked_versions_.find(type_url);
  return it == acked_versions_.end() ? "" : it->second;
}

}  // namespace meshpilot::testing
