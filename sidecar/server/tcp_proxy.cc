// The TCP proxy filter: one upstream connection per downstream connection, bytes both ways
// (server/relay.h: half-close carried across, a reset or error on either side closes both).

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include "sidecar/router/route_match.h"
#include "sidecar/upstream/load_balancer.h"
#include "sidecar/server/connection.h"
#include "sidecar/server/relay.h"
#include "sidecar/server/upstream_pool.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

asio::awaitable<void> RunTcpProxy(Worker& worker, Transport downstream, ConnectionInfo info,
                                  std::shared_ptr<const ProxyConfig> config,
                                  const config::TcpProxyChain& chain, bool inbound) {
  const std::string& cluster_name =
      chain.weighted.empty()
          ? chain.cluster
          : router::PickWeighted(chain.weighted, chain.total_weight, worker.rng()()).name;
  const ClusterEntry* cluster = config->FindCluster(cluster_name);
  if (cluster == nullptr) co_return;
  // Istio's tcp metrics: a connection that fails is opened and closed with its response flag.
  auto failed = [&](uint16_t flag) {
    IstioTcpCounters& counters = cluster->stats->istio_tcp.For(inbound, flag);
    counters.opened.fetch_add(1, std::memory_order_relaxed);
    counters.closed.fetch_add(1, std::memory_order_relaxed);
  };
  tcp::endpoint peer;
  const upstream::Host* host = nullptr;
  if (cluster->config->type == config::DiscoveryType::kOriginalDst) {
    // Without a redirect the destination is meshproxy itself: passing through would loop.
    if (!info.redirected) co_return;
    peer = info.destination;
  } else {
    std::optional<uint64_t> hash;
    if (chain.hash_source_ip) hash = upstream::Hash64(info.remote.address().to_string());
    host = cluster->lb->Pick(worker.rng(), nullptr, hash);
    if (host == nullptr) {
      cluster->stats->upstream_cx_none_healthy.fetch_add(1, std::memory_order_relaxed);
      failed(kNoHealthyUpstream);
      co_return;
    }
    peer = host->address;
  }
  ClusterStats& stats = *cluster->stats;
  // The max_connections place is taken before connecting; a failed connect gives it back.
  ConnectionSlot slot =
      ConnectionSlot::Claim(cluster->stats, cluster->config->circuit_breakers.max_connections);
  if (!slot) {
    stats.upstream_cx_overflow.fetch_add(1, std::memory_order_relaxed);
    failed(kUpstreamOverflow);
    co_return;
  }
  Transport upstream(worker.io());
  const bool connected = co_await ConnectUpstream(
      upstream, peer, Clock::now() + cluster->config->connect_timeout,
      cluster->config->tcp_keepalive, cluster->config->tls.get(), stats);
  // Passive outlier detection sees whether the host could be reached.
  if (host != nullptr && cluster->lb->outlier() != nullptr) {
    const upstream::OutlierDetector& outlier = *cluster->lb->outlier();
    if (connected) {
      outlier.ReportConnected(*host, worker.rng()(), Clock::now());
    } else {
      outlier.ReportLocalOrigin(*host, false, worker.rng()(), Clock::now());
    }
  }
  if (!connected) {
    failed(kUpstreamConnectionFailure);
    co_return;
  }
  upstream.tcp().expires_never();
  IstioTcpCounters& istio = stats.istio_tcp.For(inbound, 0);
  istio.opened.fetch_add(1, std::memory_order_relaxed);
  if (host != nullptr) {
    host->active_requests.fetch_add(1, std::memory_order_relaxed);
    host->total_requests.fetch_add(1, std::memory_order_relaxed);
  }
  auto shared_cluster = cluster->lb;  // keeps `host` alive
  co_await Relay(worker.io(), downstream, upstream,
                 {stats.upstream_cx_tx_bytes_total, &istio.received_bytes,
                  stats.upstream_cx_rx_bytes_total, &istio.sent_bytes},
                 chain.idle_timeout);
  slot.Release();
  istio.closed.fetch_add(1, std::memory_order_relaxed);
  if (host != nullptr) host->active_requests.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace meshpilot::sidecar::server
