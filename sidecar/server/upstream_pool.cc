#include "sidecar/server/upstream_pool.h"

#include <sys/socket.h>

#include <cerrno>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

UpstreamConnection::UpstreamConnection(asio::io_context& io, std::shared_ptr<ClusterStats> s)
    : stream(io), stats(std::move(s)) {}

UpstreamConnection::~UpstreamConnection() {
  if (connected) {
    stats->upstream_cx_active.fetch_sub(1, std::memory_order_relaxed);
    stats->upstream_cx_destroy.fetch_add(1, std::memory_order_relaxed);
  }
}

namespace {

// An idle HTTP/1.1 connection has nothing to read: EOF means the peer closed it, data means
// it broke protocol. Either way it must not carry the next request.
bool StillUsable(UpstreamConnection& connection) {
  if (!connection.stream.socket().is_open() || connection.buffer.size() > 0) return false;
  char byte;
  ssize_t n = ::recv(connection.stream.socket().native_handle(), &byte, 1,
                     MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

asio::awaitable<Acquired> UpstreamPool::Acquire(const std::string& cluster,
                                                const tcp::endpoint& peer,
                                                std::shared_ptr<ClusterStats> stats,
                                                std::chrono::steady_clock::time_point deadline,
                                                uint32_t max_connections) {
  if (auto it = idle_.find({cluster, peer}); it != idle_.end()) {
    while (!it->second.empty()) {
      std::unique_ptr<UpstreamConnection> connection = std::move(it->second.back());
      it->second.pop_back();
      if (StillUsable(*connection)) {
        connection->reused = true;
        co_return Acquired{std::move(connection), {}};
      }
    }
  }
  if (stats->upstream_cx_active.load(std::memory_order_relaxed) >=
      static_cast<int64_t>(max_connections)) {
    co_return Acquired{nullptr, {}, true};
  }
  auto connection = std::make_unique<UpstreamConnection>(io_, stats);
  boost::system::error_code ec;
  connection->stream.expires_at(deadline);
  co_await connection->stream.async_connect(peer, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    stats->upstream_cx_connect_fail.fetch_add(1, std::memory_order_relaxed);
    co_return Acquired{nullptr, ec};
  }
  connection->stream.socket().set_option(tcp::no_delay(true), ec);
  connection->connected = true;
  stats->upstream_cx_total.fetch_add(1, std::memory_order_relaxed);
  stats->upstream_cx_active.fetch_add(1, std::memory_order_relaxed);
  co_return Acquired{std::move(connection), {}};
}

void UpstreamPool::Release(const std::string& cluster, const tcp::endpoint& peer,
                           std::unique_ptr<UpstreamConnection> connection) {
  auto& idle = idle_[{cluster, peer}];
  if (idle.size() >= kMaxIdlePerEndpoint) return;
  connection->stream.expires_never();
  idle.push_back(std::move(connection));
}

}  // namespace meshpilot::sidecar::server
