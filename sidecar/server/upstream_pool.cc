#include "sidecar/server/upstream_pool.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "sidecar/server/http1_upstream.h"
#include "sidecar/server/http2_codec.h"
#include "sidecar/server/http2_connection.h"

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

// Servers close idle keep-alive connections after seconds (nginx 75, Node.js 5): one idle for
// less than this is reused without asking the kernel, which saves a system call per request
// under load. A request that still meets a closed connection is retried once on a fresh one
// when its body is held (the router's stale-connection retry).
constexpr auto kTrustedIdle = std::chrono::seconds(1);

// An idle HTTP/1.1 connection has nothing to read: EOF means the peer closed it, data means
// it broke protocol. Either way it must not carry the next request.
bool StillUsable(UpstreamConnection& connection) {
  if (!connection.stream.socket().is_open() || connection.buffer.size() > 0) return false;
  if (Clock::now() - connection.released_at < kTrustedIdle) return true;
  char byte;
  ssize_t n = ::recv(connection.stream.socket().native_handle(), &byte, 1,
                     MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

bool AtConnectionLimit(const UpstreamTarget& target) {
  return target.stats->upstream_cx_active.load(std::memory_order_relaxed) >=
         static_cast<int64_t>(target.max_connections);
}

}  // namespace

asio::awaitable<OpenedStream> UpstreamPool::Open(const UpstreamTarget& target, Protocol protocol,
                                                 Clock::time_point connect_deadline) {
  if (protocol == Protocol::kHttp2) co_return OpenHttp2(target, connect_deadline);
  co_return co_await OpenHttp1(target, connect_deadline);
}

asio::awaitable<OpenedStream> UpstreamPool::OpenHttp1(const UpstreamTarget& target,
                                                      Clock::time_point deadline) {
  IdleConnections& idle = Entry(idle_, target.cluster, target.peer);
  auto stream = [&](std::unique_ptr<UpstreamConnection> connection) {
    return OpenedStream{std::make_unique<Http1UpstreamStream>(*this, idle, std::move(connection),
                                                              target.head_request)};
  };
  while (!idle.empty()) {
    std::unique_ptr<UpstreamConnection> connection = std::move(idle.back());
    idle.pop_back();
    if (StillUsable(*connection)) {
      connection->reused = true;
      co_return stream(std::move(connection));
    }
  }
  if (AtConnectionLimit(target)) co_return OpenedStream{nullptr, StreamError::kNone, true};
  auto connection = std::make_unique<UpstreamConnection>(io_, target.stats);
  boost::system::error_code ec;
  connection->stream.expires_at(deadline);
  co_await connection->stream.async_connect(target.peer,
                                            asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    target.stats->upstream_cx_connect_fail.fetch_add(1, std::memory_order_relaxed);
    co_return OpenedStream{nullptr, StreamError::kConnectFailure};
  }
  connection->stream.socket().set_option(tcp::no_delay(true), ec);
  connection->connected = true;
  target.stats->upstream_cx_total.fetch_add(1, std::memory_order_relaxed);
  target.stats->upstream_cx_active.fetch_add(1, std::memory_order_relaxed);
  co_return stream(std::move(connection));
}

OpenedStream UpstreamPool::OpenHttp2(const UpstreamTarget& target, Clock::time_point deadline) {
  auto& connections = Entry(http2_, target.cluster, target.peer);
  connections.erase(
      std::remove_if(connections.begin(), connections.end(),
                     [](const std::shared_ptr<Http2Connection>& c) { return c->dead(); }),
      connections.end());
  for (const auto& connection : connections) {
    if (connection->CanOpenStream(target.max_concurrent_streams)) {
      return OpenedStream{NewHttp2UpstreamStream(connection)};
    }
  }
  if (AtConnectionLimit(target)) return OpenedStream{nullptr, StreamError::kNone, true};
  auto connection = std::make_shared<Http2Connection>(io_, tcp::socket(io_),
                                                      Http2Connection::Role::kClient);
  connections.push_back(connection);
  asio::co_spawn(io_, connection->Connect(target.peer, deadline, target.stats), asio::detached);
  return OpenedStream{NewHttp2UpstreamStream(std::move(connection))};
}

void UpstreamPool::Release(IdleConnections& idle,
                           std::unique_ptr<UpstreamConnection> connection) {
  if (idle.size() >= kMaxIdlePerEndpoint) return;
  connection->stream.expires_never();
  connection->released_at = Clock::now();
  idle.push_back(std::move(connection));
}

Protocol UpstreamProtocolOf(const config::ClusterConfig& cluster, Protocol downstream) {
  switch (cluster.protocol) {
    case config::UpstreamProtocol::kHttp2:
      return Protocol::kHttp2;
    case config::UpstreamProtocol::kDownstream:
      return downstream;
    case config::UpstreamProtocol::kHttp1:
      break;
  }
  return Protocol::kHttp1;
}

}  // namespace meshpilot::sidecar::server
