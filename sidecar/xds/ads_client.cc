#include "sidecar/xds/ads_client.h"

#include <random>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "sidecar/http/grpc.h"
#include "sidecar/server/http2_connection.h"
#include "spdlog/spdlog.h"

namespace meshpilot::sidecar::xds {

namespace asio = boost::asio;
using asio::redirect_error;
using asio::use_awaitable;
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using server::Clock;
using server::Http2Connection;
using server::Http2Stream;
using server::StreamError;
using tcp = asio::ip::tcp;

namespace {

constexpr std::string_view kAdsPath =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
// gRPC's minimum connect timeout.
constexpr auto kConnectTimeout = std::chrono::seconds(20);
// A control plane that vanished without a FIN (its node died) is noticed within about a minute
// (the grpc++ channel did it with HTTP/2 PINGs at the same period).
const config::TcpKeepalive kKeepalive{.probes = 3, .time = 30, .interval = 10};

// host:port or [v6]:port; a name is resolved (blocking this thread only, which has nothing else
// to do meanwhile).
absl::StatusOr<tcp::endpoint> Resolve(asio::io_context& io, const std::string& address) {
  const size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(address).substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("not host:port: \"", address, "\""));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  boost::system::error_code ec;
  asio::ip::address ip = asio::ip::make_address(host, ec);
  if (!ec) return tcp::endpoint(ip, static_cast<uint16_t>(port));
  tcp::resolver resolver(io);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", ec.message()));
  }
  return results.begin()->endpoint();
}

// How the stream ended, as gRPC reports it: grpc-status and grpc-message of the trailers (or
// of a trailers-only response), else UNAVAILABLE for what the connection did.
GrpcEnd EndOf(const Http2Stream& stream, std::string transport_reason) {
  const http::HeaderMap& status_headers =
      stream.ended_with_headers() ? stream.headers() : stream.trailers();
  if (std::optional<uint32_t> code = http::GrpcStatusOf(status_headers)) {
    return {*code, http::PercentDecodeGrpcMessage(status_headers.GetOr("grpc-message", ""))};
  }
  const unsigned http_status = stream.headers().Status();
  if (http_status != 0 && http_status != 200) {
    return {static_cast<uint32_t>(http::GrpcStatusForHttp(http_status)),
            absl::StrCat("HTTP status ", http_status)};
  }
  if (!stream.trailers().empty()) {
    return {static_cast<uint32_t>(http::GrpcStatus::kInternal), "trailers without grpc-status"};
  }
  return {static_cast<uint32_t>(http::GrpcStatus::kUnavailable), std::move(transport_reason)};
}

}  // namespace

AdsClient::AdsClient(AdsClientOptions options, StatsStore& stats, ConfigStore& store)
    : options_(std::move(options)),
      stats_(stats),
      store_(store),
      state_(stats),
      connection_stats_(std::make_shared<ClusterStats>()) {}

AdsClient::~AdsClient() { Stop(); }

void AdsClient::Start() {
  asio::co_spawn(io_, Run(), asio::detached);
  asio::co_spawn(io_, RunWarmingTimer(), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

void AdsClient::Stop() {
  if (!thread_.joinable()) return;
  asio::post(io_, [this] {
    stopping_ = true;
    backoff_timer_.cancel();
    warming_timer_.cancel();
    if (connection_) connection_->Close();  // the stream ends, and RunStream with it
  });
  thread_.join();
}

void AdsClient::Publish() {
  std::shared_ptr<const ProxyConfig> config = state_.Build();
  store_.Store(config);
  if (options_.on_update) options_.on_update(config);
  warming_timer_.cancel();  // its deadline may have moved
}

asio::awaitable<void> AdsClient::RunWarmingTimer() {
  while (!stopping_) {
    std::optional<Clock::time_point> next = state_.NextWarmingDeadline();
    warming_timer_.expires_at(next.value_or(Clock::time_point::max()));
    boost::system::error_code ec;
    co_await warming_timer_.async_wait(redirect_error(use_awaitable, ec));
    next = state_.NextWarmingDeadline();
    if (!stopping_ && next && *next <= Clock::now()) {
      spdlog::info("xds: initial fetch timeout: a warming listener or cluster goes into service");
      Publish();
    }
  }
}

asio::awaitable<void> AdsClient::Run() {
  std::mt19937_64 rng(std::random_device{}());
  uint32_t failures = 0;
  while (!stopping_) {
    const bool progressed = co_await RunStream();
    connected_ = false;
    if (stopping_) break;
    failures = progressed ? 0 : failures + 1;
    // Full jitter: uniform in [0, min(max, initial * 2^failures)), at least a few ms.
    int64_t ceiling = options_.initial_backoff.count();
    for (uint32_t i = 0; i < failures && ceiling < options_.max_backoff.count(); ++i) ceiling *= 2;
    ceiling = std::min<int64_t>(ceiling, options_.max_backoff.count());
    auto delay = std::chrono::milliseconds(5 + static_cast<int64_t>(rng() % ceiling));
    spdlog::info("xds: stream to {} ended; reconnecting in {} ms", options_.server_address,
                 delay.count());
    backoff_timer_.expires_after(delay);
    boost::system::error_code ec;
    co_await backoff_timer_.async_wait(redirect_error(use_awaitable, ec));
  }
}

asio::awaitable<bool> AdsClient::SendRequest(Http2Stream& stream, XdsType type,
                                             const std::string& version, const std::string& nonce,
                                             const std::string& error) {
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
    request.mutable_error_detail()->set_code(static_cast<int>(http::GrpcStatus::kInvalidArgument));
    request.mutable_error_detail()->set_message(error);
  }
  sent_names_[static_cast<size_t>(type)] = std::move(names);
  subscribed_[static_cast<size_t>(type)] = true;
  const StreamError sent =
      co_await stream.WriteBody(http::GrpcFrame(request.SerializeAsString()), false);
  co_return sent == StreamError::kNone;
}

asio::awaitable<absl::Status> AdsClient::OnResponse(Http2Stream& stream,
                                                    std::string_view message) {
  DiscoveryResponse response;
  if (!response.ParseFromArray(message.data(), static_cast<int>(message.size()))) {
    co_return absl::InternalError(
        absl::StrCat("a response of ", message.size(), " bytes is not a DiscoveryResponse"));
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
    co_return absl::OkStatus();
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
    std::vector<std::string> names = state_.Subscription(dependent);
    if ((subscribed_[d] || !names.empty()) && names != sent_names_[d]) {
      const bool sent =
          co_await SendRequest(stream, dependent, state_.AckedVersion(dependent), last_nonce_[d], "");
      if (!sent) co_return absl::UnavailableError("stream reset");
    }
  }
  const bool sent =
      co_await SendRequest(stream, type, state_.AckedVersion(type), response.nonce(), error);
  if (!sent) co_return absl::UnavailableError("stream reset");
  co_return absl::OkStatus();
}

asio::awaitable<std::optional<GrpcEnd>> AdsClient::ReceiveResponses(Http2Stream& stream,
                                                                     bool& progressed) {
  const StreamError headers_error = co_await stream.WaitHeaders(Clock::time_point::max());
  if (headers_error != StreamError::kNone || stream.ended_with_headers() ||
      stream.headers().Status() != 200) {
    co_return std::nullopt;  // the status is the stream's (EndOf)
  }
  if (!http::IsGrpc(stream.headers())) {
    co_return GrpcEnd{static_cast<uint32_t>(http::GrpcStatus::kUnknown),
                      absl::StrCat("content-type \"",
                                   std::string(stream.headers().GetOr("content-type", "")),
                                   "\" is not gRPC's")};
  }
  http::GrpcMessageReader reader(options_.max_response_bytes);
  bool end = false;
  while (!end) {
    const StreamError error =
        co_await stream.ReadBody(reader.buffer(), end, Clock::time_point::max());
    if (error != StreamError::kNone) end = true;
    for (;;) {
      absl::StatusOr<std::optional<std::string_view>> message = reader.Next();
      absl::Status handled = message.status();
      if (handled.ok() && !*message) break;
      if (handled.ok()) {
        if (!progressed) {
          progressed = true;
          connected_ = true;
          stats_.xds_connect.fetch_add(1, std::memory_order_relaxed);
          spdlog::info("xds: connected to {}", options_.server_address);
        }
        handled = co_await OnResponse(stream, **message);
      }
      if (absl::IsUnavailable(handled)) co_return std::nullopt;  // a write found it gone
      if (!handled.ok()) {
        // A message too large is not buffered, nor is anything after it read: the stream ends
        // here, as gRPC's own limit ends it.
        spdlog::error("xds: {}", std::string(handled.message()));
        co_return GrpcEnd{static_cast<uint32_t>(handled.code()), std::string(handled.message())};
      }
    }
  }
  co_return std::nullopt;
}

asio::awaitable<bool> AdsClient::RunStream() {
  node_sent_ = false;
  last_nonce_ = {};
  subscribed_ = {};
  absl::StatusOr<tcp::endpoint> peer = Resolve(io_, options_.server_address);
  if (!peer.ok()) {
    spdlog::warn("xds: {}", std::string(peer.status().message()));
    co_return false;
  }
  auto connection = std::make_shared<Http2Connection>(io_, server::Transport(io_),
                                                      Http2Connection::Role::kClient);
  connection_ = connection;
  asio::co_spawn(io_,
                 connection->Connect(*peer, Clock::now() + kConnectTimeout, connection_stats_,
                                     kKeepalive),
                 asio::detached);
  // gRPC over HTTP/2: a POST whose body is the client's messages, never ended by this side.
  const http::HeaderMap headers{{":method", "POST"},
                                {":scheme", "http"},
                                {":path", kAdsPath},
                                {":authority", options_.server_address},
                                {"te", "trailers"},
                                {"content-type", "application/grpc"},
                                {"user-agent", "meshproxy"}};
  std::shared_ptr<Http2Stream> stream = connection->OpenStream(headers, /*end_stream=*/false);

  // CDS and LDS are wildcard; EDS and RDS resume with what the applied config needs, with the
  // versions last ACKed so an unchanged control plane need not resend.
  bool ok = co_await SendRequest(*stream, XdsType::kCluster,
                                 state_.AckedVersion(XdsType::kCluster), "", "");
  if (ok) {
    ok = co_await SendRequest(*stream, XdsType::kListener,
                              state_.AckedVersion(XdsType::kListener), "", "");
  }
  for (XdsType type : {XdsType::kEndpoint, XdsType::kRoute}) {
    if (ok && !state_.Subscription(type).empty()) {
      ok = co_await SendRequest(*stream, type, state_.AckedVersion(type), "", "");
    }
  }

  bool progressed = false;
  std::optional<GrpcEnd> local_end;
  if (ok) local_end = co_await ReceiveResponses(*stream, progressed);
  connection->Close();
  connection_.reset();
  if (stopping_) {
    spdlog::info("xds: stream to {} closed: meshproxy is stopping", options_.server_address);
    co_return progressed;
  }
  GrpcEnd status;
  if (local_end) {
    status = *local_end;
  } else {
    status = EndOf(*stream, stream->CloseReason() == StreamError::kConnectFailure
                                ? "cannot connect"
                                : "connection lost");
  }
  if (status.code != 0) {
    spdlog::warn("xds: stream to {} failed: {} {}", options_.server_address, status.code,
                 status.message);
  } else {
    spdlog::info("xds: stream to {} ended by the server (grpc-status 0)", options_.server_address);
  }
  co_return progressed;
}

}  // namespace meshpilot::sidecar::xds
