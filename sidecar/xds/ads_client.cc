#include "sidecar/xds/ads_client.h"

#include <random>

#include "absl/cleanup/cleanup.h"

#include "spdlog/spdlog.h"

namespace meshpilot::sidecar::xds {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

AdsClient::AdsClient(AdsClientOptions options, StatsStore& stats, ConfigStore& store)
    : options_(std::move(options)), stats_(stats), store_(store), state_(stats) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  // meshproxy does its own back-off between streams; the channel should just try when asked.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  channel_ = grpc::CreateCustomChannel(options_.server_address,
                                       grpc::InsecureChannelCredentials(), args);
  stub_ = envoy::service::discovery::v3::AggregatedDiscoveryService::NewStub(channel_);
}

AdsClient::~AdsClient() { Stop(); }

void AdsClient::Start() {
  thread_ = std::thread([this] { Run(); });
  warming_thread_ = std::thread([this] { RunWarmingTimer(); });
}

void AdsClient::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (warming_thread_.joinable()) warming_thread_.join();
}

void AdsClient::Publish() {
  std::shared_ptr<const ProxyConfig> config = state_.Build();
  store_.Store(config);
  if (options_.on_update) options_.on_update(config);
}

void AdsClient::RunWarmingTimer() {
  // Warming timeouts are seconds long: looking a few times a second is precise enough.
  constexpr auto kTick = std::chrono::milliseconds(100);
  std::unique_lock<std::mutex> lock(mu_);
  while (!wake_.wait_for(lock, kTick, [this] { return stopping_; })) {
    lock.unlock();
    {
      std::lock_guard<std::mutex> state_lock(state_mu_);
      std::optional<std::chrono::steady_clock::time_point> next = state_.NextWarmingDeadline();
      if (next && *next <= std::chrono::steady_clock::now()) {
        spdlog::info("xds: initial fetch timeout: a warming listener or cluster goes into service");
        Publish();
      }
    }
    lock.lock();
  }
}

void AdsClient::Run() {
  std::mt19937_64 rng(std::random_device{}());
  uint32_t failures = 0;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    const bool progressed = RunStream();
    connected_ = false;
    failures = progressed ? 0 : failures + 1;
    // Full jitter: uniform in [0, min(max, initial * 2^failures)), at least a few ms.
    int64_t ceiling = options_.initial_backoff.count();
    for (uint32_t i = 0; i < failures && ceiling < options_.max_backoff.count(); ++i) ceiling *= 2;
    ceiling = std::min<int64_t>(ceiling, options_.max_backoff.count());
    auto delay = std::chrono::milliseconds(5 + static_cast<int64_t>(rng() % ceiling));
    spdlog::info("xds: stream to {} ended; reconnecting in {} ms", options_.server_address,
                 delay.count());
    std::unique_lock<std::mutex> lock(mu_);
    wake_.wait_for(lock, delay, [this] { return stopping_; });
  }
}

bool AdsClient::SendRequest(Stream& stream, XdsType type, const std::string& version,
                            const std::string& nonce, const std::string& error) {
  DiscoveryRequest request;
  if (!node_sent_) {
    *request.mutable_node() = options_.node;
    node_sent_ = true;
  }
  request.set_type_url(TypeUrl(type));
  request.set_version_info(version);
  request.set_response_nonce(nonce);
  std::vector<std::string> names = state_.Subscription(type);
  for (const std::string& name : names) request.add_resource_names(name);
  if (!error.empty()) {
    request.mutable_error_detail()->set_code(grpc::StatusCode::INVALID_ARGUMENT);
    request.mutable_error_detail()->set_message(error);
  }
  sent_names_[static_cast<size_t>(type)] = std::move(names);
  subscribed_[static_cast<size_t>(type)] = true;
  return stream.Write(request);
}

bool AdsClient::RunStream() {
  grpc::ClientContext context;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    context_ = &context;
  }
  node_sent_ = false;
  last_nonce_ = {};
  subscribed_ = {};
  std::unique_ptr<Stream> stream = stub_->StreamAggregatedResources(&context);
  bool progressed = false;
  std::unique_lock<std::mutex> state_lock(state_mu_);
  // CDS and LDS are wildcard; EDS and RDS resume with what the applied config needs, with the
  // versions last ACKed so an unchanged control plane need not resend.
  bool ok = SendRequest(*stream, XdsType::kCluster, state_.AckedVersion(XdsType::kCluster), "", "");
  ok = ok && SendRequest(*stream, XdsType::kListener, state_.AckedVersion(XdsType::kListener), "", "");
  for (XdsType type : {XdsType::kEndpoint, XdsType::kRoute}) {
    if (ok && !state_.Subscription(type).empty()) {
      ok = SendRequest(*stream, type, state_.AckedVersion(type), "", "");
    }
  }
  DiscoveryResponse response;
  state_lock.unlock();
  while (ok && stream->Read(&response)) {
    state_lock.lock();
    absl::Cleanup unlock = [&state_lock] { state_lock.unlock(); };
    if (!progressed) {
      progressed = true;
      connected_ = true;
      stats_.xds_connect.fetch_add(1, std::memory_order_relaxed);
      spdlog::info("xds: connected to {}", options_.server_address);
    }
    XdsType type = XdsType::kCluster;
    bool known = false;
    for (XdsType t : kXdsTypes) {
      if (response.type_url() == TypeUrl(t)) {
        type = t;
        known = true;
      }
    }
    if (!known) {
      spdlog::warn("xds: ignoring response of unknown type {}", response.type_url());
      continue;
    }
    const size_t index = static_cast<size_t>(type);
    last_nonce_[index] = response.nonce();
    std::string error = state_.Apply(type, response);
    Publish();
    if (error.empty()) {
      spdlog::info("xds: ACK {} version {} ({} resources)", kTypeNames[index],
                   response.version_info(), response.resources_size());
    } else {
      spdlog::warn("xds: NACK {} version {}: {}", kTypeNames[index], response.version_info(),
                   error);
    }
    // New clusters or listeners may need other endpoints or routes: say so right away, and
    // before the ACK, as Envoy does, so that the server sees the new names before it learns
    // the listeners are in (and may then remove clusters the old routes named).
    for (XdsType dependent : {XdsType::kEndpoint, XdsType::kRoute}) {
      const size_t d = static_cast<size_t>(dependent);
      if (!ok) break;
      std::vector<std::string> names = state_.Subscription(dependent);
      if ((subscribed_[d] || !names.empty()) && names != sent_names_[d]) {
        ok = SendRequest(*stream, dependent, state_.AckedVersion(dependent), last_nonce_[d], "");
      }
    }
    if (ok) ok = SendRequest(*stream, type, state_.AckedVersion(type), response.nonce(), error);
  }
  grpc::Status status = stream->Finish();
  {
    std::lock_guard<std::mutex> lock(mu_);
    context_ = nullptr;
  }
  if (!status.ok()) {
    spdlog::warn("xds: stream to {} failed: {} {}", options_.server_address,
                 static_cast<int>(status.error_code()), status.error_message());
  }
  return progressed;
}

}  // namespace meshpilot::sidecar::xds
