#include "tests/xds/ads_test_client.h"

#include <functional>
#include <stdexcept>
#include <string_view>
#include <type_traits>

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

std::string NameOf(const google::protobuf::Any& any) {
  envoy::config::cluster::v3::Cluster cluster;
  envoy::config::endpoint::v3::ClusterLoadAssignment assignment;
  envoy::config::listener::v3::Listener listener;
  envoy::config::route::v3::RouteConfiguration route;
  if (any.UnpackTo(&cluster)) return cluster.name();
  if (any.UnpackTo(&assignment)) return assignment.cluster_name();
  if (any.UnpackTo(&listener)) return listener.name();
  if (any.UnpackTo(&route)) return route.name();
  return "<unknown " + any.type_url() + ">";
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

void RemoveService(model::MeshState& mesh, const std::string& name) {
  mesh.services.erase("default/" + name);
  mesh.endpoints.erase("default/" + name);
}

std::string ClusterName(const std::string& service, uint32_t port) {
  return absl::StrCat("outbound|", port, "||", service, ".default.svc.cluster.local");
}

std::vector<std::string> ResourceNames(const DiscoveryResponse& response) {
  std::vector<std::string> names;
  for (const google::protobuf::Any& any : response.resources()) names.push_back(NameOf(any));
  return names;
}

std::vector<std::string> ResourceNames(const DeltaDiscoveryResponse& response) {
  std::vector<std::string> names;
  for (const auto& resource : response.resources()) names.push_back(NameOf(resource.resource()));
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

// --- XdsTestStream ---------------------------------------------------------------------

template <typename Request, typename Response>
XdsTestStream<Request, Response>::XdsTestStream(int port, AdsClientOptions options)
    : options_(std::move(options)) {
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
  if constexpr (std::is_same_v<Request, DeltaDiscoveryRequest>) {
    stream_ = stub_->DeltaAggregatedResources(&context_);
  } else {
    stream_ = stub_->StreamAggregatedResources(&context_);
  }
  if (options_.read_responses) reader_ = std::thread([this] { ReadLoop(); });
}

template <typename Request, typename Response>
XdsTestStream<Request, Response>::~XdsTestStream() {
  context_.TryCancel();
  if (reader_.joinable()) {
    reader_.join();
  } else {
    std::lock_guard lock(write_mu_);
    stream_->Finish();
  }
}

template <typename Request, typename Response>
void XdsTestStream<Request, Response>::ReadLoop() {
  Response response;
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

template <typename Request, typename Response>
bool XdsTestStream<Request, Response>::WriteLocked(Request request) {
  {
    std::lock_guard state_lock(mu_);
    if (end_status_) return false;
  }
  if (!node_sent_) {
    *request.mutable_node() = options_.node;
    node_sent_ = true;
  }
  return stream_->Write(request);
}

template <typename Request, typename Response>
std::optional<Response> XdsTestStream<Request, Response>::Read(
    std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return !responses_.empty() || end_status_; });
  if (responses_.empty()) return std::nullopt;
  Response response = std::move(responses_.front());
  responses_.pop_front();
  return response;
}

template <typename Request, typename Response>
bool XdsTestStream<Request, Response>::ExpectNothing(std::chrono::milliseconds quiet) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, quiet, [this] { return !responses_.empty(); });
  return responses_.empty();
}

template <typename Request, typename Response>
std::optional<grpc::Status> XdsTestStream<Request, Response>::WaitForEnd(
    std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return end_status_.has_value(); });
  return end_status_;
}

template class XdsTestStream<DiscoveryRequest, DiscoveryResponse>;
template class XdsTestStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

// --- AdsTestClient ---------------------------------------------------------------------

AdsTestClient::AdsTestClient(int port, AdsClientOptions options)
    : XdsTestStream(port, std::move(options)) {}

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
  subscriptions_[type_url] = names;
  if (!error_detail && !nonce.empty()) acked_versions_[type_url] = version;
  return WriteLocked(std::move(request));
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

std::string AdsTestClient::AckedVersion(const std::string& type_url) const {
  std::lock_guard lock(write_mu_);
  auto it = acked_versions_.find(type_url);
  return it == acked_versions_.end() ? "" : it->second;
}

// --- DeltaTestClient -------------------------------------------------------------------

DeltaTestClient::DeltaTestClient(int port, AdsClientOptions options)
    : XdsTestStream(port, std::move(options)) {}

bool DeltaTestClient::Send(DeltaDiscoveryRequest request) {
  std::lock_guard lock(write_mu_);
  return WriteLocked(std::move(request));
}

bool DeltaTestClient::Subscribe(const std::string& type_url,
                                const std::vector<std::string>& names,
                                const Versions& initial_versions) {
  DeltaDiscoveryRequest request;
  request.set_type_url(type_url);
  for (const std::string& name : names) request.add_resource_names_subscribe(name);
  for (const auto& [name, version] : initial_versions) {
    (*request.mutable_initial_resource_versions())[name] = version;
  }
  return Send(std::move(request));
}

bool DeltaTestClient::Unsubscribe(const std::string& type_url,
                                  const std::vector<std::string>& names) {
  DeltaDiscoveryRequest request;
  request.set_type_url(type_url);
  for (const std::string& name : names) request.add_resource_names_unsubscribe(name);
  std::lock_guard lock(write_mu_);
  for (const std::string& name : names) held_[type_url].erase(name);
  return WriteLocked(std::move(request));
}

bool DeltaTestClient::Ack(const DeltaDiscoveryResponse& response) {
  DeltaDiscoveryRequest request;
  request.set_type_url(response.type_url());
  request.set_response_nonce(response.nonce());
  std::lock_guard lock(write_mu_);
  Versions& held = held_[response.type_url()];
  for (const auto& resource : response.resources()) held[resource.name()] = resource.version();
  for (const std::string& name : response.removed_resources()) held.erase(name);
  return WriteLocked(std::move(request));
}

bool DeltaTestClient::Nack(const DeltaDiscoveryResponse& response, const std::string& message) {
  DeltaDiscoveryRequest request;
  request.set_type_url(response.type_url());
  request.set_response_nonce(response.nonce());
  request.mutable_error_detail()->set_code(3);  // INVALID_ARGUMENT, as Envoy reports it
  request.mutable_error_detail()->set_message(message);
  return Send(std::move(request));
}

DeltaTestClient::Versions DeltaTestClient::Held(const std::string& type_url) const {
  std::lock_guard lock(write_mu_);
  auto it = held_.find(type_url);
  return it == held_.end() ? Versions{} : it->second;
}

}  // namespace meshpilot::testing
