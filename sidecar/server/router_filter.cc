#include "sidecar/server/router_filter.h"

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>
#include <optional>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "sidecar/http/grpc.h"
#include "sidecar/istio_metrics.h"
#include "sidecar/router/cors.h"
#include "sidecar/router/headers.h"
#include "sidecar/router/retry.h"
#include "sidecar/router/route_match.h"
#include "sidecar/router/timeout.h"
#include "sidecar/server/connection_slot.h"
#include "sidecar/server/request_mirror.h"
#include "sidecar/server/upgrade.h"
#include "sidecar/server/upstream_pool.h"
#include "spdlog/spdlog.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

// A request body up to this size with a known length is held, so the request can be retried.
constexpr size_t kRetryBufferLimit = 64 * 1024;
constexpr char kConnectFailure[] =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
constexpr char kRbacDenied[] = "RBAC: access denied";
const std::vector<config::MirrorPolicy> kNoMirrors;  // an upgrade is not copied
constexpr char kOverflow[] =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";
constexpr char kConnectionTermination[] =
    "upstream connect error or disconnect/reset before headers. reset reason: connection "
    "termination";
constexpr char kRemoteRefusedStream[] =
    "upstream connect error or disconnect/reset before headers. reset reason: remote refused "
    "stream reset";

// The header mutations that apply to a response, most specific first: route, weighted
// cluster, virtual host, route config, meshproxy's own, and the CORS filter's (which Envoy
// applies after the router's).
struct Mutations {
  const config::HeaderMutations* levels[6] = {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
  const router::HeaderValueContext* context = nullptr;  // for values with %COMMAND%s
  void ApplyTo(http::HeaderMap& headers) const {
    for (const auto* m : levels) {
      if (m != nullptr) router::ApplyHeaderMutations(*m, headers, context);
    }
  }
};

// Streams a request body that is not held from downstream to upstream while the router reads
// the response (gRPC streams go both ways at once), keeping a copy of a body that stays within
// kRetryBufferLimit, as Envoy does, so that a request sent whole can still be retried, and
// handing each chunk to the request's mirror copies. The router joins it before returning.
struct BodyPump {
  explicit BodyPump(asio::io_context& io) : finished(io) {}
  asio::steady_timer finished;
  bool done = false;
  bool sent_whole = false;  // the body ended and all of it went upstream
  bool copy_overflowed = false;
  std::string copy;
  uint64_t bytes = 0;  // read from downstream
  GrpcMessageCounter messages;

  bool can_replay() const { return done && sent_whole && !copy_overflowed; }
};

asio::awaitable<void> PumpBody(DownstreamStream& down, UpstreamStream& up,
                               std::shared_ptr<BodyPump> pump,
                               std::vector<std::shared_ptr<MirrorBody>> mirrors) {
  std::string chunk;
  for (bool end = false; !end;) {
    chunk.clear();
    if (!co_await down.ReadBody(chunk, end)) {
      up.Reset();
      break;
    }
    if (chunk.empty() && !end) continue;
    for (const auto& mirror : mirrors) mirror->Append(chunk, end);
    pump->bytes += chunk.size();
    pump->messages.Feed(chunk);
    if (!pump->copy_overflowed && pump->copy.size() + chunk.size() <= kRetryBufferLimit) {
      pump->copy.append(chunk);
    } else {
      pump->copy_overflowed = true;
      pump->copy.clear();
    }
    const bool with_trailers = end && !down.request_trailers().empty();
    if (co_await up.SendBody(chunk, end && !with_trailers) != StreamError::kNone) break;
    if (with_trailers) {
      if (co_await up.SendTrailers(down.request_trailers()) != StreamError::kNone) break;
    }
    pump->sent_whole = end;
  }
  for (const auto& mirror : mirrors) mirror->Finish();  // cut short: the copies are reset
  pump->done = true;
  pump->finished.cancel();
}

}  // namespace

asio::awaitable<void> RouterFilter::Serve(DownstreamStream& down) {
  const ExchangeCount counted;
  const Clock::time_point received = Clock::now();
  std::shared_ptr<const ProxyConfig> config = worker_.store().Load();
  ListenerStats& listener_stats = *listener_.stats;
  listener_stats.downstream_rq_total.fetch_add(1, std::memory_order_relaxed);
  http::HeaderMap& request = down.request_headers();
  const bool grpc = http::IsGrpc(request);
  router::HeaderValueContext header_context{
      info_.remote, info_.destination, down.protocol() == Protocol::kHttp2 ? "HTTP/2" : "HTTP/1.1",
      {}, &request, std::chrono::system_clock::now()};
  const std::optional<std::chrono::milliseconds> grpc_timeout = http::GrpcTimeout(request);

  // What Istio's metrics record when the request ends (istio_metrics.h); the peer comes from
  // Istio's metadata exchange headers, which go no further (istio_peer.h), if the chain has
  // istio.metadata_exchange.
  unsigned response_code = 0;
  std::optional<uint32_t> response_grpc_status;
  PeerDirectory& peers = Peers();
  IstioRequest istio{.inbound = listener_.config->inbound, .grpc = grpc};
  GrpcMessageCounter response_messages;
  bool answer_peer = false;  // the request carried the exchange, so the response carries ours
  const config::HttpChain::PeerExchange& exchange = chain_.peer_exchange;
  if (exchange.from_request) {
    if (std::optional<std::string_view> peer = request.Get(kPeerMetadataHeader)) {
      istio.peer = peers.Find(*peer);
      answer_peer = exchange.to_response;
      request.Remove(kPeerMetadataHeader);
    }
    request.Remove(kPeerMetadataIdHeader);
  }
  auto add_peer_headers = [&](http::HeaderMap& headers) {
    if (!answer_peer) return;
    headers.Set(kPeerMetadataIdHeader, peers.local_id());
    headers.Set(kPeerMetadataHeader, peers.local_metadata());
  };
  IstioRequestTable* istio_table = listener_stats.istio_unrouted;  // the cluster's, once known
  absl::Cleanup record_istio = [&] {
    if (response_code == 0 || istio_table == nullptr) return;
    istio.response_code = response_code;
    istio.grpc_status = response_grpc_status;
    istio.response_messages = response_messages.messages();
    istio.duration_ms = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - received).count());
    istio_table->Record(istio);
  };
  auto count_downstream = [&](unsigned status) {
    response_code = status;
    if (status >= 100 && status < 600) {
      listener_stats.downstream_rq_class[status / 100].fetch_add(1, std::memory_order_relaxed);
    }
  };
  // Envoy's local reply: text for HTTP, a trailers-only response for gRPC.
  auto local_reply = [&](unsigned status, std::string body, const Mutations& mutations,
                         std::string location = "",
                         std::optional<uint32_t> grpc_status = std::nullopt) -> asio::awaitable<void> {
    http::HeaderMap headers;
    if (grpc) {
      headers = http::GrpcLocalReplyHeaders(status, body, grpc_status);
      body.clear();
    } else {
      headers.Add(":status", std::to_string(status));
      if (!body.empty()) headers.Add("content-type", "text/plain");
      headers.Add("content-length", std::to_string(body.size()));
      if (!location.empty()) headers.Add("location", location);
    }
    mutations.ApplyTo(headers);
    headers.Set("server", "envoy");
    add_peer_headers(headers);
    count_downstream(headers.Status());
    if (grpc) response_grpc_status = http::GrpcStatusOf(headers);
    istio.response_bytes += body.size();
    co_await down.WriteResponse(std::move(headers), body, true);
  };
  auto overloaded = [&](Mutations mutations) -> asio::awaitable<void> {
    static const config::HeaderMutations kOverloaded{
        {{"x-envoy-overloaded", "true", config::HeaderToAdd::Action::kOverwriteIfExistsOrAdd}},
        {}};
    mutations.levels[4] = &kOverloaded;
    istio.response_flags |= kUpstreamOverflow;
    co_await local_reply(503, kOverflow, mutations);
  };
  auto sleep = [&](std::chrono::milliseconds delay) -> asio::awaitable<void> {
    asio::steady_timer timer(worker_.io(), delay);
    boost::system::error_code ec;
    co_await timer.async_wait(redirect_error(use_awaitable, ec));
  };

  // Views into the request's map, which keeps them valid whatever is set later.
  const std::string_view host = request.GetOr(":authority", "");
  const std::string_view path = request.GetOr(":path", "/");
  const std::string_view method = request.GetOr(":method", "GET");
  auto headers = [&](std::string_view name) { return request.Get(name); };
  if (!chain_.rbac.empty()) {
    // The RBAC filters run before the router (and so before route selection).
    filters::RbacRequest rbac_request{info_.remote,        info_.destination,
                                      headers,             router::PathOnly(path),
                                      info_.server_name,   info_.tls_terminated,
                                      info_.peer_certificate.get()};
    for (const auto& rbac : chain_.rbac) {
      if (!rbac->Evaluate(rbac_request).allowed) {
        listener_stats.rbac_denied.fetch_add(1, std::memory_order_relaxed);
        co_return co_await local_reply(403, kRbacDenied, {});
      }
    }
    listener_stats.rbac_allowed.fetch_add(1, std::memory_order_relaxed);
  }
  const config::RouteTable* table = config->RoutesFor(chain_);
  const config::VirtualHost* vhost = table ? router::SelectVirtualHost(*table, host) : nullptr;
  const config::Route* route = vhost ? router::SelectRoute(*vhost, path, headers) : nullptr;
  if (route == nullptr) {
    listener_stats.no_route.fetch_add(1, std::memory_order_relaxed);
    istio.response_flags |= kNoRouteFound;
    co_return co_await local_reply(404, "", {});
  }
  Mutations response_mutations{{&route->response_headers, nullptr, &vhost->response_headers,
                                &table->response_headers},
                               &header_context};
  // The CORS filter runs before the fault filter; redirects and direct responses bypass it.
  router::CorsDecision cors;
  if (route->cors && std::holds_alternative<config::RouteAction>(route->action) &&
      worker_.rng()() % 1000000 < route->cors->enabled_per_million) {
    cors = router::DecideCors(*route->cors, request);
    if (cors.local_reply) {
      cors.local_reply->Set("server", "envoy");
      add_peer_headers(*cors.local_reply);
      count_downstream(200);
      co_await down.WriteHeaders(*std::move(cors.local_reply), true);
      co_return;
    }
    response_mutations.levels[5] = &cors.response_headers;
  }
  if (route->fault) {
    // The fault filter runs before the router: delay first, then abort.
    const config::Fault& fault = *route->fault;
    if (fault.delay && worker_.rng()() % 1000000 < fault.delay_per_million) {
      istio.response_flags |= kDelayInjected;
      co_await sleep(*fault.delay);
    }
    if ((fault.abort_http_status || fault.abort_grpc_status) &&
        worker_.rng()() % 1000000 < fault.abort_per_million) {
      istio.response_flags |= kFaultInjected;
      if (fault.abort_grpc_status) {
        http::HeaderMap reply = http::GrpcLocalReplyHeaders(200, "fault filter abort",
                                                            *fault.abort_grpc_status);
        add_peer_headers(reply);
        count_downstream(200);
        response_grpc_status = *fault.abort_grpc_status;
        co_await down.WriteHeaders(std::move(reply), true);
        co_return;
      }
      co_return co_await local_reply(*fault.abort_http_status, "fault filter abort",
                                     response_mutations);
    }
  }
  if (const auto* redirect = std::get_if<config::Redirect>(&route->action)) {
    co_return co_await local_reply(
        redirect->status, "", response_mutations,
        router::RedirectLocation(*redirect, route->match, request.GetOr(":scheme", "http"), host,
                                 path));
  }
  if (const auto* direct = std::get_if<config::DirectResponse>(&route->action)) {
    co_return co_await local_reply(direct->status, direct->body, response_mutations);
  }
  const auto& action = std::get<config::RouteAction>(route->action);
  const config::WeightedCluster* weighted =
      action.weighted.empty()
          ? nullptr
          : &router::PickWeighted(action.weighted, action.total_weight, worker_.rng()());
  // The config (held for the request) owns the name.
  const std::string& cluster_name = weighted ? weighted->name : action.cluster;
  if (weighted != nullptr) response_mutations.levels[1] = &weighted->response_headers;
  header_context.upstream_cluster = cluster_name;
  const ClusterEntry* cluster = config->FindCluster(cluster_name);
  if (cluster == nullptr) {
    istio.response_flags |= kNoClusterFound;
    co_return co_await local_reply(503, "", response_mutations);
  }
  ClusterStats& stats = *cluster->stats;
  istio_table = &stats.istio_requests;
  const config::CircuitBreakers& breakers = cluster->config->circuit_breakers;
  // Circuit breaking (max_requests), as Envoy's x-envoy-overloaded 503.
  const ActiveUpstreamRequest active_request(stats, breakers.max_requests);
  if (!active_request.admitted()) co_return co_await overloaded(response_mutations);

  // Consistent hashing reads the request as the client sent it; cookies it generates go on the
  // upstream's response.
  std::vector<std::string> set_cookies;
  const std::optional<uint64_t> request_hash =
      action.hash_policies.empty()
          ? std::nullopt
          : router::RequestHash(action.hash_policies, path, headers,
                                info_.remote.address().to_string(),
                                absl::StrCat(info_.remote.address().to_string(), ":",
                                             info_.remote.port(), info_.local.address().to_string(),
                                             ":", info_.local.port()),
                                set_cookies);
  // An upgrade (WebSocket) the route allows goes upstream with its Upgrade and Connection
  // headers and becomes a tunnel (server/upgrade.h); one it does not allow is refused, as
  // Envoy's upgrade_failed.
  const std::string upgrade =
      down.protocol() == Protocol::kHttp1 ? UpgradeRequested(request) : std::string();
  if (!upgrade.empty() && !UpgradeAllowed(upgrade, chain_, action)) {
    co_return co_await local_reply(403, "", response_mutations);
  }
  // The request as it goes upstream.
  router::StripHopByHop(request);
  if (!upgrade.empty()) {
    request.Set("upgrade", upgrade);
    request.Set("connection", "upgrade");
  }
  if (!request.Has("x-request-id")) {
    request.AddStatic("x-request-id", router::NewRequestId(worker_.rng()).view());
  }
  if (!request.Has("x-forwarded-proto")) {
    request.AddStatic("x-forwarded-proto", info_.tls_terminated ? "https" : "http");
  }
  router::ApplyHeaderMutations(route->request_headers, request, &header_context);
  if (weighted != nullptr) {
    router::ApplyHeaderMutations(weighted->request_headers, request, &header_context);
  }
  router::ApplyHeaderMutations(vhost->request_headers, request, &header_context);
  router::ApplyHeaderMutations(table->request_headers, request, &header_context);
  if (std::string rewritten = router::RewritePath(route->match, action, path); rewritten != path) {
    request.Set("x-envoy-original-path", path);
    request.Set(":path", rewritten);
  }
  if (weighted != nullptr && !weighted->host_rewrite.empty()) {
    request.Set(":authority", weighted->host_rewrite);  // the destination's beats the route's
  } else if (!action.host_rewrite.empty()) {
    request.Set(":authority", action.host_rewrite);
  }
  // The client side of the exchange; not to destinations outside the mesh (PassthroughCluster).
  if (exchange.to_request && cluster->config->type != config::DiscoveryType::kOriginalDst) {
    request.Set(kPeerMetadataIdHeader, peers.local_id());
    request.Set(kPeerMetadataHeader, peers.local_metadata());
  }

  // Hold a small body so the request can be retried; stream anything else.
  const std::optional<uint64_t> body_length = down.request_body_length();
  std::optional<std::string> held;
  if (body_length && *body_length <= kRetryBufferLimit) {
    held.emplace();
    for (bool end = *body_length == 0; !end;) {
      if (!co_await down.ReadBody(*held, end)) co_return;
    }
  }

  const Protocol protocol = UpstreamProtocolOf(*cluster->config, down.protocol());
  // Copies get a held body at once, a streamed one as the first attempt's pump reads it.
  std::vector<std::shared_ptr<MirrorBody>> mirrors;
  for (const config::MirrorPolicy& mirror : upgrade.empty() ? action.mirrors : kNoMirrors) {
    if (worker_.rng()() % 1000000 >= mirror.per_million) continue;
    mirrors.push_back(MirrorRequest(worker_, config, mirror, request, down.protocol(), action.timeout));
    if (held) mirrors.back()->Append(*held, true);
  }
  // However the request ends, a copy still waiting for body bytes is reset.
  struct FinishMirrors {
    std::vector<std::shared_ptr<MirrorBody>>& mirrors;
    ~FinishMirrors() {
      for (const auto& mirror : mirrors) mirror->Finish();
    }
  } finish_mirrors{mirrors};
  const config::RetryPolicy* retry = action.retry ? &*action.retry : nullptr;
  uint32_t retries_left = retry ? retry->num_retries : 0;
  uint32_t retry_number = 0;
  // The route timeout, and the stream's (max_stream_duration, grpc-timeout) from its start.
  const router::RequestTimeouts timeouts =
      router::TimeoutsFor(action, grpc, grpc_timeout, chain_.max_stream_duration);
  const std::optional<Clock::time_point> stream_deadline =
      timeouts.stream ? std::optional(received + *timeouts.stream) : std::nullopt;
  std::optional<Clock::time_point> deadline =
      timeouts.route.count() > 0 ? std::optional(Clock::now() + timeouts.route) : std::nullopt;
  if (stream_deadline) deadline = std::min(deadline.value_or(*stream_deadline), *stream_deadline);
  const upstream::Host* previous = nullptr;
  bool stale_retried = false;
  std::shared_ptr<const upstream::LoadBalancer> lb = cluster->lb;  // keeps hosts alive
  std::shared_ptr<BodyPump> pump;

  // The upstream stream outlives the pump that writes into it.
  std::unique_ptr<UpstreamStream> up;
  // A client that gives up cancels the upstream request (or its place in the pending queue),
  // and nothing is retried for it.
  PendingCancellation abandoned{&down};
  down.OnAbandoned([&] {
    abandoned.Cancel();
    if (up != nullptr) up->Reset();
  });
  // Envoy's retry resource (max_retries): taken when a retry is decided and held through its
  // back-off and the attempt it makes, until that attempt's outcome is known or the request
  // ends, so retries in flight count against the breaker.
  struct RetryResource {
    std::atomic<int64_t>* active = nullptr;
    void Release() {
      if (active != nullptr) active->fetch_sub(1, std::memory_order_relaxed);
      active = nullptr;
    }
    ~RetryResource() { Release(); }
  } retry_resource;
  auto may_retry = [&](router::AttemptOutcome outcome, unsigned status,
                       std::optional<uint32_t> grpc_status = std::nullopt) {
    retry_resource.Release();
    if (abandoned.cancelled) return false;
    // A streamed body can be sent again only if it went whole and fits the retry buffer.
    if (pump != nullptr && !pump->can_replay()) return false;
    if (retry == nullptr || retries_left == 0 ||
        !router::ShouldRetry(*retry, outcome, status, grpc_status)) {
      return false;
    }
    if (stats.upstream_rq_retry_active.load(std::memory_order_relaxed) >=
        static_cast<int64_t>(breakers.max_retries)) {
      stats.upstream_rq_retry_overflow.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    return true;
  };
  auto backoff = [&]() -> asio::awaitable<void> {
    --retries_left;
    ++retry_number;
    stats.upstream_rq_retry.fetch_add(1, std::memory_order_relaxed);
    stats.upstream_rq_retry_active.fetch_add(1, std::memory_order_relaxed);
    retry_resource.active = &stats.upstream_rq_retry_active;
    co_await sleep(router::Backoff(*retry, retry_number, worker_.rng()()));
  };
  auto timeout_reply = [&]() -> asio::awaitable<void> {
    if (stream_deadline && Clock::now() + std::chrono::milliseconds(1) >= *stream_deadline) {
      // Envoy's HTTP connection manager ends the stream, whatever the upstream was doing.
      listener_.HttpStats(chain_)->downstream_rq_max_duration_reached.fetch_add(
          1, std::memory_order_relaxed);
      istio.response_flags |= kDurationTimeout;
      co_return co_await local_reply(
          408, "downstream duration timeout", response_mutations, "",
          static_cast<uint32_t>(http::GrpcStatus::kDeadlineExceeded));
    }
    stats.upstream_rq_timeout.fetch_add(1, std::memory_order_relaxed);
    stats.CountResponse(504);
    istio.response_flags |= kUpstreamRequestTimeout;
    co_await local_reply(504, "upstream request timeout", response_mutations);
  };
  // An attempt that failed with no response to pass on, and no retry left: Envoy's 503.
  auto upstream_failed = [&](ResponseFlag flag, const char* detail) -> asio::awaitable<void> {
    stats.CountResponse(503);
    istio.response_flags |= flag;
    co_await local_reply(503, detail, response_mutations);
  };

  if (!upgrade.empty()) {
    // One attempt, on a connection of its own; the route's timeout covers the answer's head.
    const upstream::Host* host = lb->Pick(worker_.rng(), nullptr, request_hash);
    if (host == nullptr) {
      stats.upstream_cx_none_healthy.fetch_add(1, std::memory_order_relaxed);
      istio.response_flags |= kNoHealthyUpstream;
      co_return co_await local_reply(503, "no healthy upstream", response_mutations);
    }
    const upstream::HostRequest active(host);
    ConnectionSlot slot = ConnectionSlot::Claim(cluster->stats, breakers.max_connections);
    if (!slot) {
      stats.upstream_cx_overflow.fetch_add(1, std::memory_order_relaxed);
      co_return co_await overloaded(response_mutations);
    }
    UpgradeResponse up = co_await SendUpgrade(worker_, *cluster->config, stats, host->address,
                                              request, held ? *held : std::string_view(),
                                              deadline.value_or(Clock::time_point::max()));
    const upstream::OutlierDetector* outlier = lb->outlier();
    if (up.error != StreamError::kNone) {
      if (outlier != nullptr) {
        outlier->ReportLocalOrigin(*host, up.error == StreamError::kTimeout, worker_.rng()(),
                                   Clock::now());
      }
      if (up.error == StreamError::kTimeout) co_return co_await timeout_reply();
      co_return co_await upstream_failed(up.error == StreamError::kConnectFailure
                                             ? kUpstreamConnectionFailure
                                             : kUpstreamConnectionTermination,
                                         up.error == StreamError::kConnectFailure
                                             ? kConnectFailure
                                             : kConnectionTermination);
    }
    const unsigned status = up.headers.Status();
    stats.CountResponse(status);
    if (outlier != nullptr) outlier->Report(*host, status, worker_.rng()(), Clock::now());
    router::StripHopByHop(up.headers);
    add_peer_headers(up.headers);
    response_mutations.ApplyTo(up.headers);
    count_downstream(status);
    if (status != 101) {
      istio.response_bytes += up.body.size();
      co_await down.WriteResponse(std::move(up.headers), up.body, true);
      co_return;
    }
    up.headers.Set("upgrade", upgrade);
    up.headers.Set("connection", "upgrade");
    co_await RunTunnel(worker_, down.TakeTunnel(), up, stats, chain_.idle_timeout);
    co_return;
  }

  // The attempts, until one answers the client; every way out of them is a break to the
  // pump's join below (not a co_return).
  for (;;) {
    if (pump != nullptr) {
      held = std::move(pump->copy);  // may_retry checked it is the whole body
      pump.reset();
    }
    up.reset();
    UpstreamTarget target =
        UpstreamTarget::Of(cluster_name, *cluster->config, cluster->stats, method == "HEAD");
    // The host: the connection's original destination, or the load balancer's pick.
    const upstream::Host* host = nullptr;
    bool picked = true;
    if (cluster->config->type == config::DiscoveryType::kOriginalDst) {
      picked = info_.redirected;
      if (picked) target.peer = info_.destination;
    } else {
      host = lb->Pick(worker_.rng(),
                      retry != nullptr && retry->avoid_previous_hosts ? previous : nullptr,
                      request_hash);
      picked = host != nullptr;
      if (picked) target.peer = host->address;
      // auto_host_rewrite: the authority is the chosen host's name, when it has one.
      if (picked && action.auto_host_rewrite && !host->hostname.empty()) {
        request.Set(":authority", host->hostname);
      }
    }
    if (!picked) {
      stats.upstream_cx_none_healthy.fetch_add(1, std::memory_order_relaxed);
      istio.response_flags |= kNoHealthyUpstream;
      co_await local_reply(503, "no healthy upstream", response_mutations);
      break;
    }
    previous = host;
    const upstream::HostRequest active(host);
    // Passive outlier detection sees every attempt's result: a response, or a locally
    // originated error (connect failure or reset, or a timeout).
    auto report = [&](unsigned status) {
      if (host != nullptr && lb->outlier() != nullptr) {
        lb->outlier()->Report(*host, status, worker_.rng()(), Clock::now());
      }
    };
    auto report_local_origin = [&](bool timeout) {
      if (host != nullptr && lb->outlier() != nullptr) {
        lb->outlier()->ReportLocalOrigin(*host, timeout, worker_.rng()(), Clock::now());
      }
    };

    const Clock::time_point now = Clock::now();
    Clock::time_point attempt_deadline = deadline.value_or(Clock::time_point::max());
    if (retry != nullptr && retry->per_try_timeout.count() > 0) {
      attempt_deadline = std::min(attempt_deadline, now + retry->per_try_timeout);
    }
    // max_connections reached and the pending queue full: Envoy's overflow.
    OpenedStream opened = worker_.pool().Reuse(target, protocol);
    if (opened.stream == nullptr) {
      opened = co_await worker_.pool().Open(target, protocol, attempt_deadline, &abandoned);
    }
    if (opened.overflow) {
      co_await overloaded(response_mutations);
      break;
    }
    if (opened.cancelled) break;  // the client is gone: no one to reply to
    up = std::move(opened.stream);
    StreamError error = opened.error;
    if (error == StreamError::kNone) {
      const http::HeaderMap& request_trailers = down.request_trailers();
      const bool headers_only = held && held->empty() && request_trailers.empty();
      error = co_await up->SendHeaders(request, headers_only);
      if (error == StreamError::kNone && held && !headers_only) {
        error = co_await up->SendBody(*held, request_trailers.empty());
        if (error == StreamError::kNone && !request_trailers.empty()) {
          error = co_await up->SendTrailers(request_trailers);
        }
      } else if (error == StreamError::kNone && !held) {
        pump = std::make_shared<BodyPump>(worker_.io());
        // Only the first pass of the body feeds the copies.
        asio::co_spawn(worker_.io(), PumpBody(down, *up, pump, std::exchange(mirrors, {})),
                       asio::detached);
      }
    }
    http::HeaderMap response;
    bool response_ended = false;
    if (error == StreamError::kNone) {
      error = co_await up->ReadHeaders(response, response_ended, attempt_deadline);
    }
    if (error == StreamError::kConnectFailure) {
      report_local_origin(false);
      if (deadline && Clock::now() >= *deadline) {
        co_await timeout_reply();
        break;
      }
      // Nothing was sent yet: even a streamed request can try again.
      if (may_retry(router::AttemptOutcome::kConnectFailure, 0)) {
        co_await backoff();
        continue;
      }
      co_await upstream_failed(kUpstreamConnectionFailure, kConnectFailure);
      break;
    }
    if (error == StreamError::kTimeout) {
      if (up != nullptr) {  // else it timed out in the pending queue, before any host
        report_local_origin(true);
        up->Reset();
      }
      if (deadline && Clock::now() + std::chrono::milliseconds(1) >= *deadline) {
        co_await timeout_reply();
        break;
      }
      stats.upstream_rq_per_try_timeout.fetch_add(1, std::memory_order_relaxed);
      if (may_retry(router::AttemptOutcome::kPerTryTimeout, 0)) {
        co_await backoff();
        continue;
      }
      co_await timeout_reply();
      break;
    }
    if (error != StreamError::kNone) {
      spdlog::debug("upstream {}:{} of {}: reset", target.peer.address().to_string(),
                    target.peer.port(), cluster_name);
      // A pooled connection the server closed as we reused it: once, a fresh one.
      if (held && up->reused_idle_connection() && !stale_retried) {
        stale_retried = true;
        continue;
      }
      report_local_origin(false);
      const bool refused = error == StreamError::kRefused;
      if (may_retry(refused ? router::AttemptOutcome::kRefusedStream
                            : router::AttemptOutcome::kReset,
                    0)) {
        co_await backoff();
        continue;
      }
      co_await upstream_failed(kUpstreamConnectionTermination,
                               refused ? kRemoteRefusedStream : kConnectionTermination);
      break;
    }
    const unsigned status = response.Status();
    const bool ended_with_headers = response_ended;
    // grpc-status is in the headers of a trailers-only response, else in the trailers: when a
    // gRPC condition could retry, hold a small response until its trailers to decide.
    std::optional<uint32_t> grpc_status =
        response_ended ? http::GrpcStatusOf(response) : std::nullopt;
    std::string& held_response = response_body_;
    held_response.clear();
    if (!response_ended && grpc && retry != nullptr && retry->any_grpc() && retries_left > 0 &&
        (pump == nullptr || pump->can_replay())) {
      while (!response_ended && held_response.size() <= kRetryBufferLimit) {
        error = co_await up->ReadBody(held_response, response_ended, attempt_deadline);
        if (error != StreamError::kNone) break;
      }
      if (response_ended) grpc_status = http::GrpcStatusOf(up->trailers());
    }
    const Clock::time_point body_deadline = deadline.value_or(Clock::time_point::max());
    // Body that came with the headers goes downstream with them (one write on HTTP/1.1); if it
    // breaks off, the headers still go and the body loop below meets the error.
    StreamError early_body_error = StreamError::kNone;
    if (error == StreamError::kNone && held_response.empty() && !response_ended) {
      early_body_error = up->ReadBufferedBody(held_response, response_ended);
    }
    if (error != StreamError::kNone) {
      // The response broke off before its end, and none of it was sent on.
      report_local_origin(error == StreamError::kTimeout);
      up->Reset();
      if (error == StreamError::kTimeout && deadline &&
          Clock::now() + std::chrono::milliseconds(1) >= *deadline) {
        co_await timeout_reply();
        break;
      }
      if (may_retry(error == StreamError::kTimeout ? router::AttemptOutcome::kPerTryTimeout
                                                   : router::AttemptOutcome::kReset,
                    0)) {
        co_await backoff();
        continue;
      }
      co_await upstream_failed(kUpstreamConnectionTermination, kConnectionTermination);
      break;
    }
    stats.CountResponse(status);
    report(status);
    if (may_retry(router::AttemptOutcome::kResponse, status, grpc_status)) {
      up->Reset();
      co_await backoff();
      continue;
    }
    router::StripHopByHop(response);
    if (exchange.from_response) {
      // The server side's answer to the exchange.
      if (std::optional<std::string_view> peer = response.Get(kPeerMetadataHeader)) {
        istio.peer = peers.Find(*peer);
        response.Remove(kPeerMetadataHeader);
      }
      response.Remove(kPeerMetadataIdHeader);
    }
    add_peer_headers(response);
    for (const std::string& cookie : set_cookies) response.Add("set-cookie", cookie);
    response_mutations.ApplyTo(response);
    count_downstream(status);
    if (grpc && ended_with_headers) response_grpc_status = http::GrpcStatusOf(response);
    const bool ends_with_held =
        response_ended && !held_response.empty() && up->trailers().empty();
    istio.response_bytes += held_response.size();
    if (grpc) response_messages.Feed(held_response);
    const bool headers_written = co_await down.WriteResponse(
        std::move(response), held_response, ended_with_headers || ends_with_held);
    if (!headers_written) {
      istio.response_flags |= kDownstreamConnectionTermination;
      up->Reset();
      break;
    }
    std::string chunk;
    for (bool done = ended_with_headers || ends_with_held; !done; done = response_ended) {
      if (chunk.empty() && !response_ended) {
        error = std::exchange(early_body_error, StreamError::kNone);
        if (error == StreamError::kNone) {
          error = co_await up->ReadBody(chunk, response_ended, body_deadline);
        }
        if (error != StreamError::kNone) {
          spdlog::debug("upstream {}:{} of {}: response body broke off ({})",
                        target.peer.address().to_string(), target.peer.port(), cluster_name,
                        static_cast<int>(error));
          // Mid-body: nothing to reply with.
          down.Reset();
          break;
        }
      }
      const bool with_trailers = response_ended && !up->trailers().empty();
      if (!chunk.empty() || (response_ended && !with_trailers)) {
        istio.response_bytes += chunk.size();
        if (grpc) response_messages.Feed(chunk);
        const bool written = co_await down.WriteBody(chunk, response_ended && !with_trailers);
        if (!written) {
          istio.response_flags |= kDownstreamConnectionTermination;
          up->Reset();
          break;
        }
      }
      chunk.clear();
      if (with_trailers) {
        if (grpc) response_grpc_status = http::GrpcStatusOf(up->trailers());
        const bool written = co_await down.WriteTrailers(up->trailers());
        if (!written) up->Reset();
      }
    }
    break;
  }
  // The pump, which uses `up` and `down`, is joined.
  if (pump != nullptr && !pump->done) {
    up->Reset();
    down.Reset();
    while (!pump->done) {
      pump->finished.expires_at(Clock::time_point::max());
      boost::system::error_code ec;
      co_await pump->finished.async_wait(redirect_error(use_awaitable, ec));
    }
  }
  // The request's body as it came: streamed by the pump, else held (a retry holds the pump's
  // copy of a streamed one).
  if (pump != nullptr) {
    istio.request_bytes = pump->bytes;
    istio.request_messages = pump->messages.messages();
  } else if (held) {
    istio.request_bytes = held->size();
    if (grpc) {
      GrpcMessageCounter request_messages;
      request_messages.Feed(*held);
      istio.request_messages = request_messages.messages();
    }
  }
  down.OnAbandoned(nullptr);
  // An idle keep-alive connection does not keep a large body's room.
  if (response_body_.capacity() > kRetryBufferLimit) std::string().swap(response_body_);
}

}  // namespace meshpilot::sidecar::server
