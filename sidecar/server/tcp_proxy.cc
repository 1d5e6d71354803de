// The TCP proxy filter: one upstream connection per downstream connection, bytes both ways,
// half-close carried across (a FIN or TLS close_notify from one side becomes the other's end of
// sending: a close_notify then a FIN toward a TLS side, a shutdown(SHUT_WR) toward a plaintext
// one; the other direction keeps flowing), a reset or error on either side closes both.

#include <array>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "sidecar/router/route_match.h"
#include "sidecar/upstream/load_balancer.h"
#include "sidecar/server/connection.h"
#include "sidecar/server/upstream_pool.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

using Clock = std::chrono::steady_clock;

// `bytes` and `istio_bytes` count what goes across (a cluster's stat and an Istio metric).
asio::awaitable<void> Pump(Transport& from, Transport& to, std::atomic<uint64_t>& bytes,
                           std::atomic<uint64_t>& istio_bytes, Clock::time_point& last_activity) {
  std::array<char, 16384> buffer;
  for (;;) {
    boost::system::error_code ec;
    size_t n = co_await from.async_read_some(asio::buffer(buffer), redirect_error(use_awaitable, ec));
    if (n > 0) {
      last_activity = Clock::now();
      boost::system::error_code write_ec;
      co_await asio::async_write(to, asio::buffer(buffer.data(), n),
                                 redirect_error(use_awaitable, write_ec));
      if (write_ec) {
        from.Close();
        to.Close();
        co_return;
      }
      bytes.fetch_add(n, std::memory_order_relaxed);
      istio_bytes.fetch_add(n, std::memory_order_relaxed);
    }
    // A TLS peer that shuts its TCP side without close_notify ends its stream too. Waiting
    // for the close_notify to leave is bounded by the idle timeout, as any write.
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
      co_await to.ShutdownSend();
      co_return;
    }
    if (ec) {
      from.Close();
      to.Close();
      co_return;
    }
  }
}

asio::awaitable<void> PumpThenSignal(Transport& from, Transport& to,
                                     std::atomic<uint64_t>& bytes,
                                     std::atomic<uint64_t>& istio_bytes,
                                     Clock::time_point& last_activity, bool& done,
                                     asio::steady_timer& signal) {
  co_await Pump(from, to, bytes, istio_bytes, last_activity);
  done = true;
  signal.cancel();
}

// Closes both sockets once no byte has moved either way for `idle` (the pumps then end);
// returns when that happened or when `finished` is set and `timer` cancelled, then signals.
asio::awaitable<void> IdleWatch(Transport& a, Transport& b, std::chrono::milliseconds idle,
                                const Clock::time_point& last_activity, const bool& finished,
                                asio::steady_timer& timer, bool& done,
                                asio::steady_timer& signal) {
  for (;;) {
    timer.expires_at(last_activity + idle);
    boost::system::error_code ec;
    co_await timer.async_wait(redirect_error(use_awaitable, ec));
    if (finished) break;
    const bool idle_now = Clock::now() >= last_activity + idle;
    if (idle_now) {
      a.Close();
      b.Close();
      break;
    }
  }
  done = true;
  signal.cancel();
}

}  // namespace

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
  boost::system::error_code ec;
  IstioTcpCounters& istio = stats.istio_tcp.For(inbound, 0);
  istio.opened.fetch_add(1, std::memory_order_relaxed);
  if (host != nullptr) {
    host->active_requests.fetch_add(1, std::memory_order_relaxed);
    host->total_requests.fetch_add(1, std::memory_order_relaxed);
  }
  auto shared_cluster = cluster->lb;  // keeps `host` alive
  asio::steady_timer signal(worker.io(), std::chrono::steady_clock::time_point::max());
  bool upstream_done = false;
  Clock::time_point last_activity = Clock::now();
  asio::co_spawn(worker.io(),
                 PumpThenSignal(upstream, downstream, stats.upstream_cx_rx_bytes_total,
                                istio.sent_bytes, last_activity, upstream_done, signal),
                 asio::detached);
  // The watch is stopped (and waited for) before the sockets and the timer go out of scope.
  asio::steady_timer idle_timer(worker.io());
  bool finished = false;
  bool watch_done = chain.idle_timeout.count() == 0;
  asio::steady_timer watch_signal(worker.io(), Clock::time_point::max());
  if (!watch_done) {
    asio::co_spawn(worker.io(),
                   IdleWatch(downstream, upstream, chain.idle_timeout, last_activity, finished,
                             idle_timer, watch_done, watch_signal),
                   asio::detached);
  }
  co_await Pump(downstream, upstream, stats.upstream_cx_tx_bytes_total, istio.received_bytes,
                last_activity);
  if (!upstream_done) co_await signal.async_wait(redirect_error(use_awaitable, ec));
  finished = true;
  idle_timer.cancel();
  if (!watch_done) co_await watch_signal.async_wait(redirect_error(use_awaitable, ec));
  slot.Release();
  istio.closed.fetch_add(1, std::memory_order_relaxed);
  if (host != nullptr) host->active_requests.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace meshpilot::sidecar::server
