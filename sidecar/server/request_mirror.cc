#include "sidecar/server/request_mirror.h"

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "sidecar/router/headers.h"
#include "sidecar/server/upstream_pool.h"
#include "spdlog/spdlog.h"

namespace meshpilot::sidecar::server {
namespace {

namespace asio = boost::asio;

asio::awaitable<void> SendCopy(Worker& worker, std::shared_ptr<const ProxyConfig> config,
                               std::string cluster_name, http::HeaderMap headers, std::string body,
                               Protocol downstream, std::chrono::milliseconds timeout) {
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
  OpenedStream opened = co_await worker.pool().Open(
      target, UpstreamProtocolOf(*cluster->config, downstream), deadline);
  if (opened.overflow) co_return;
  StreamError error = opened.error;
  if (error == StreamError::kNone) error = co_await opened.stream->SendHeaders(headers, body.empty());
  if (error == StreamError::kNone && !body.empty()) {
    error = co_await opened.stream->SendBody(body, true);
  }
  http::HeaderMap response;
  bool ended = false;
  if (error == StreamError::kNone) error = co_await opened.stream->ReadHeaders(response, ended, deadline);
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

}  // namespace

void MirrorRequest(Worker& worker, std::shared_ptr<const ProxyConfig> config,
                   const config::MirrorPolicy& policy, http::HeaderMap headers, std::string body,
                   Protocol downstream, std::chrono::milliseconds timeout) {
  if (policy.append_shadow_suffix) {
    headers.Set(":authority", router::ShadowHost(headers.GetOr(":authority", "")));
  }
  asio::co_spawn(worker.io(),
                 SendCopy(worker, std::move(config), policy.cluster, std::move(headers),
                          std::move(body), downstream, timeout),
                 asio::detached);
}

}  // namespace meshpilot::sidecar::server
