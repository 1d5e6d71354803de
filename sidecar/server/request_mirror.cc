#include "sidecar/server/request_mirror.h"

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "sidecar/router/headers.h"
#include "sidecar/server/upstream_pool.h"
#include "spdlog/spdlog.h"

namespace meshpilot::sidecar::server {
namespace {

namespace asio = boost::asio;

}  // namespace

// The copy's coroutine; a friend of MirrorBody.
class MirrorCopy {
 public:
  static asio::awaitable<void> Send(Worker& worker, std::shared_ptr<const ProxyConfig> config,
                                    std::string cluster_name, http::HeaderMap headers,
                                    std::shared_ptr<MirrorBody> body, Protocol downstream,
                                    std::chrono::milliseconds timeout);

 private:
  // Sends the body as it comes; kReset once the copy is abandoned.
  static asio::awaitable<StreamError> SendBody(UpstreamStream& stream, MirrorBody& body);
};

asio::awaitable<StreamError> MirrorCopy::SendBody(UpstreamStream& stream, MirrorBody& body) {
  for (;;) {
    if (body.abandoned_) co_return StreamError::kReset;
    if (!body.pending_.empty() || body.ended_) {
      const std::string chunk = std::move(body.pending_);
      body.pending_.clear();
      const bool end = body.ended_;
      const StreamError error = co_await stream.SendBody(chunk, end);
      if (error != StreamError::kNone || end) co_return error;
      continue;
    }
    body.wake_.expires_at(Clock::time_point::max());
    boost::system::error_code ec;
    co_await body.wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> MirrorCopy::Send(Worker& worker, std::shared_ptr<const ProxyConfig> config,
                                       std::string cluster_name, http::HeaderMap headers,
                                       std::shared_ptr<MirrorBody> body, Protocol downstream,
                                       std::chrono::milliseconds timeout) {
  const ClusterEntry* cluster = config->FindCluster(cluster_name);
  if (cluster == nullptr || cluster->lb == nullptr) {
    // Unknown, or ORIGINAL_DST (a copy has no original destination of its own).
    spdlog::debug("mirror to {}: no such cluster", cluster_name);
    co_return;
  }
  ClusterStats& stats = *cluster->stats;
  const config::CircuitBreakers& breakers = cluster->config->circuit_breakers;
  const ActiveUpstreamRequest active_request(stats, breakers.max_requests);
  if (!active_request.admitted()) co_return;
  const std::shared_ptr<const upstream::LoadBalancer> lb = cluster->lb;  // keeps hosts alive
  const upstream::Host* host = lb->Pick(worker.rng());
  if (host == nullptr) {
    stats.upstream_cx_none_healthy.fetch_add(1, std::memory_order_relaxed);
    co_return;
  }
  const upstream::HostRequest active_host(host);

  const Clock::time_point deadline =
      timeout.count() > 0 ? Clock::now() + timeout : Clock::time_point::max();
  UpstreamTarget target = UpstreamTarget::Of(cluster_name, *cluster->config, cluster->stats,
                                             headers.GetOr(":method", "") == "HEAD");
  target.peer = host->address;
  // A copy's body is not kept to be sent again: a pooled connection is checked before it is
  // reused, however recently it was released. Between that check and the request the server
  // may still close it: a copy without a body then goes once more, on a fresh connection, as
  // the router's requests do.
  target.check_idle = true;
  const bool headers_only = body->ended_ && body->pending_.empty();
  OpenedStream opened;
  StreamError error = StreamError::kNone;
  http::HeaderMap response;
  bool ended = false;
  for (bool stale_retried = false;; stale_retried = true) {
    opened = co_await worker.pool().Open(target, UpstreamProtocolOf(*cluster->config, downstream),
                                         deadline);
    if (opened.overflow) co_return;
    error = opened.error;
    if (error == StreamError::kNone) error = co_await opened.stream->SendHeaders(headers, headers_only);
    if (error == StreamError::kNone && !headers_only) {
      error = co_await SendBody(*opened.stream, *body);
    }
    if (error == StreamError::kNone) {
      error = co_await opened.stream->ReadHeaders(response, ended, deadline);
    }
    const bool stale = error != StreamError::kNone && error != StreamError::kTimeout &&
                       opened.stream != nullptr && opened.stream->reused_idle_connection() &&
                       !response.Has(":status");
    if (!stale || !headers_only || stale_retried) break;
    opened.stream->Reset();
  }
  std::string discarded;
  while (error == StreamError::kNone && !ended) {
    discarded.clear();
    error = co_await opened.stream->ReadBody(discarded, ended, deadline);
  }
  if (error == StreamError::kTimeout) {
    stats.upstream_rq_timeout.fetch_add(1, std::memory_order_relaxed);
  }
  if (error != StreamError::kNone && opened.stream != nullptr) opened.stream->Reset();
  if (response.Has(":status")) {
    stats.CountResponse(response.Status());
  } else {
    stats.CountResponse(error == StreamError::kTimeout ? 504 : 503);
  }
}

MirrorBody::MirrorBody(asio::io_context& io) : wake_(io) {}

void MirrorBody::Append(std::string_view chunk, bool end) {
  if (abandoned_ || ended_) return;
  pending_.append(chunk);
  ended_ = end;
  if (pending_.size() > kMirrorBufferLimit) {
    abandoned_ = true;
    pending_.clear();
  }
  wake_.cancel();
}

void MirrorBody::Finish() {
  if (ended_) return;
  abandoned_ = true;
  pending_.clear();
  wake_.cancel();
}

std::shared_ptr<MirrorBody> MirrorRequest(Worker& worker, std::shared_ptr<const ProxyConfig> config,
                                          const config::MirrorPolicy& policy,
                                          http::HeaderMap headers, Protocol downstream,
                                          std::chrono::milliseconds timeout) {
  if (policy.append_shadow_suffix) {
    headers.Set(":authority", router::ShadowHost(headers.GetOr(":authority", "")));
  }
  auto body = std::make_shared<MirrorBody>(worker.io());
  asio::co_spawn(worker.io(),
                 MirrorCopy::Send(worker, std::move(config), policy.cluster, std::move(headers),
                                  body, downstream, timeout),
                 asio::detached);
  return body;
}

}  // namespace meshpilot::sidecar::server
