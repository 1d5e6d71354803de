#include "sidecar/server/upstream_pool.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "absl/cleanup/cleanup.h"
#include "sidecar/server/http1_upstream.h"
#include "sidecar/server/http2_codec.h"
#include "sidecar/server/http2_connection.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

UpstreamConnection::UpstreamConnection(asio::io_context& io, std::shared_ptr<ClusterStats> s,
                                       ConnectionSlot place, std::shared_ptr<uint32_t> open)
    : stream(io), stats(std::move(s)), slot(std::move(place)), open_in_pool(std::move(open)) {
  ++*open_in_pool;
}

UpstreamConnection::~UpstreamConnection() { --*open_in_pool; }

namespace {

// Servers close idle keep-alive connections after seconds (nginx 75, Node.js 5): one idle for
// less than this is reused without asking the kernel, which saves a system call per request
// under load. A request that still meets a closed connection is retried once on a fresh one
// when its body is held (the router's stale-connection retry).
constexpr auto kTrustedIdle = std::chrono::seconds(1);

// An idle HTTP/1.1 connection has nothing to read: EOF means the peer closed it, data means
// it broke protocol. Either way it must not carry the next request.
bool StillUsable(UpstreamConnection& connection, bool check, Clock::time_point now) {
  if (!connection.stream.socket().is_open() || connection.buffer.size() > 0) return false;
  if (!check && now - connection.released_at < kTrustedIdle) return true;
  char byte;
  ssize_t n = ::recv(connection.stream.socket().native_handle(), &byte, 1,
                     MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// A request in its cluster's pending queue, counted in upstream_rq_pending_active (across
// workers) while it waits.
class PendingRequest {
 public:
  explicit PendingRequest(ClusterStats& stats) : stats_(stats) {}
  ~PendingRequest() {
    if (queued_) stats_.upstream_rq_pending_active.fetch_sub(1, std::memory_order_relaxed);
  }
  PendingRequest(const PendingRequest&) = delete;
  PendingRequest& operator=(const PendingRequest&) = delete;

  bool queued() const { return queued_; }
  // Its client gave up while it waited (Envoy's upstream_rq_cancelled).
  void Cancelled() { stats_.upstream_rq_cancelled.fetch_add(1, std::memory_order_relaxed); }
  // The max_connections breaker tripped: queue, unless max_pending_requests are waiting.
  bool Enqueue(uint32_t max_pending_requests) {
    stats_.upstream_cx_overflow.fetch_add(1, std::memory_order_relaxed);
    if (stats_.upstream_rq_pending_active.fetch_add(1, std::memory_order_relaxed) >=
        static_cast<int64_t>(max_pending_requests)) {
      stats_.upstream_rq_pending_active.fetch_sub(1, std::memory_order_relaxed);
      stats_.upstream_rq_pending_overflow.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    stats_.upstream_rq_pending_total.fetch_add(1, std::memory_order_relaxed);
    queued_ = true;
    return true;
  }

 private:
  ClusterStats& stats_;
  bool queued_ = false;
};

}  // namespace

asio::awaitable<OpenedStream> UpstreamPool::Open(const UpstreamTarget& target, Protocol protocol,
                                                 Clock::time_point deadline,
                                                 PendingCancellation* cancellation) {
  PendingRequest pending(*target.stats);
  // Woken from the queue for room that may have come: a request that leaves the queue, with a
  // stream (there may be room for more) or without one (its client gave up, its deadline
  // passed), wakes the next, so that no wake is lost.
  bool woken = false;
  auto pass_wake_on = [&] {
    if (woken) WakePending(target.cluster, &target.peer);
  };
  for (;;) {
    // A client that gave up while queued: its request goes nowhere.
    if (cancellation != nullptr && cancellation->cancelled) {
      pending.Cancelled();
      pass_wake_on();
      co_return OpenedStream{nullptr, StreamError::kNone, false, true};
    }
    const Clock::time_point connect_deadline =
        std::min(deadline, Clock::now() + target.connect_timeout);
    std::optional<OpenedStream> opened;
    if (protocol == Protocol::kHttp2) {
      opened = OpenHttp2(target, connect_deadline);
    } else {
      opened = co_await OpenHttp1(target, connect_deadline);
    }
    if (opened) {
      pass_wake_on();
      co_return std::move(*opened);
    }
    if (!pending.queued() && !pending.Enqueue(target.max_pending_requests)) {
      co_return OpenedStream{nullptr, StreamError::kNone, true};
    }
    if (Clock::now() >= deadline) {
      pass_wake_on();
      co_return OpenedStream{nullptr, StreamError::kTimeout};
    }
    // Woken in vain (another request took the room): back at the head of the queue.
    woken = co_await WaitPending(target, deadline, cancellation, /*first=*/woken);
  }
}

asio::awaitable<bool> UpstreamPool::WaitPending(const UpstreamTarget& target,
                                                Clock::time_point until,
                                                PendingCancellation* cancellation, bool first) {
  PendingWaiter waiter{asio::steady_timer(io_, until), target.peer};
  auto it = pending_.find(target.cluster);
  if (it == pending_.end()) {
    it = pending_.emplace(std::string(target.cluster), std::list<PendingWaiter*>()).first;
  }
  std::list<PendingWaiter*>& queue = it->second;
  auto position = queue.insert(first ? queue.begin() : queue.end(), &waiter);
  // Out of the queue however the wait ends, also when the frame is destroyed at shutdown with
  // the wait pending (a later WakePending would touch the destroyed waiter).
  absl::Cleanup dequeue = [&queue, position, &waiter] {
    if (!waiter.woken) queue.erase(position);
  };
  if (cancellation != nullptr) {
    cancellation->waiting = &waiter.timer;
    if (cancellation->downstream != nullptr) cancellation->downstream->WatchAbandoned(true);
  }
  boost::system::error_code ec;
  co_await waiter.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (cancellation != nullptr) {
    cancellation->waiting = nullptr;
    if (cancellation->downstream != nullptr) cancellation->downstream->WatchAbandoned(false);
  }
  co_return waiter.woken;
}

void UpstreamPool::WakePending(std::string_view cluster, const tcp::endpoint* peer) {
  auto it = pending_.find(cluster);
  if (it == pending_.end()) return;
  std::list<PendingWaiter*>& queue = it->second;
  auto waiter = peer == nullptr ? queue.begin()
                                : std::find_if(queue.begin(), queue.end(),
                                               [&](PendingWaiter* w) { return w->peer == *peer; });
  if (waiter == queue.end()) return;
  (*waiter)->woken = true;
  (*waiter)->timer.cancel();
  queue.erase(waiter);
}

OpenedStream UpstreamPool::Reuse(const UpstreamTarget& target, Protocol protocol) {
  std::optional<OpenedStream> reused;
  if (protocol == Protocol::kHttp2 || target.alpn) reused = ReuseHttp2(target);
  if (!reused && protocol != Protocol::kHttp2) reused = ReuseHttp1(target);
  return reused ? std::move(*reused) : OpenedStream{};
}

OpenedStream UpstreamPool::Http1Stream(Map<IdleConnections>::value_type& entry,
                                       const UpstreamTarget& target,
                                       std::unique_ptr<UpstreamConnection> connection) {
  auto& [key, idle] = entry;
  // The stream outlives `target`: it names its cluster with the pool's own key.
  return OpenedStream{std::make_unique<Http1UpstreamStream>(*this, idle, key.first, key.second,
                                                            target, std::move(connection))};
}

std::optional<OpenedStream> UpstreamPool::ReuseHttp1(const UpstreamTarget& target) {
  auto& entry = Entry(idle_, target.cluster, target.peer);
  IdleConnections& idle = entry.second;
  const Clock::time_point now = Clock::now();
  while (!idle.empty()) {
    std::unique_ptr<UpstreamConnection> connection = std::move(idle.back());
    idle.pop_back();
    if (connection->idle_until <= now) {
      CountIdleClose(*connection);
      continue;  // its sweep is late: closed here
    }
    if (connection->tls == target.tls && StillUsable(*connection, target.check_idle, now)) {
      connection->reused = true;
      ++connection->requests;
      return Http1Stream(entry, target, std::move(connection));
    }
  }
  return std::nullopt;
}

asio::awaitable<std::optional<OpenedStream>> UpstreamPool::OpenHttp1(const UpstreamTarget& target,
                                                                     Clock::time_point deadline) {
  if (target.alpn) {
    if (auto reused = ReuseHttp2(target)) co_return reused;
  }
  if (auto reused = ReuseHttp1(target)) co_return reused;
  std::shared_ptr<uint32_t>& open = Entry(http1_open_, target.cluster, target.peer).second;
  if (open == nullptr) open = std::make_shared<uint32_t>(0);
  ConnectionSlot slot = ConnectionSlot::Claim(target.stats, target.max_connections);
  if (!slot) {
    // As Envoy's pools: one with no connection to the host (connecting ones count) opens one
    // anyway, so its pending requests are not stuck behind connections of other workers.
    // (Connections ALPN made HTTP/2 count as the worker's too.)
    if (*open > 0 || (target.alpn && !Entry(http2_, target.cluster, target.peer).second.empty())) {
      co_return std::nullopt;
    }
    slot = ConnectionSlot::Force(target.stats);
  }
  auto connection =
      std::make_unique<UpstreamConnection>(io_, target.stats, std::move(slot), open);
  connection->tls = target.tls;
  const bool connected = co_await ConnectUpstream(connection->stream, target.peer, deadline,
                                                  target.tcp_keepalive, target.tls.get(),
                                                  *target.stats);
  if (!connected) {
    connection.reset();
    ConnectionClosed(target.cluster, target.peer);  // its place is free again
    co_return OpenedStream{nullptr, StreamError::kConnectFailure};
  }
  if (target.alpn && connection->stream.alpn() == "h2") {
    // auto_config: ALPN chose HTTP/2, so the connection (and its place) joins the HTTP/2 ones.
    connection->stream.tcp().expires_never();
    auto http2 = NewHttp2(target, std::move(connection->slot), std::move(connection->stream));
    http2->AssignStream();
    co_return OpenedStream{NewHttp2UpstreamStream(std::move(http2))};
  }
  connection->requests = 1;
  if (target.max_connection_duration.count() > 0) {
    connection->max_duration_at = Clock::now() + target.max_connection_duration;
  }
  co_return Http1Stream(Entry(idle_, target.cluster, target.peer), target,
                        std::move(connection));
}

std::optional<OpenedStream> UpstreamPool::ReuseHttp2(const UpstreamTarget& target) {
  auto& connections = Entry(http2_, target.cluster, target.peer).second;
  std::erase_if(connections, [&](const std::shared_ptr<Http2Connection>& c) {
    if (c->dead()) return true;
    if (c->tls() != target.tls) {
      // Made under the cluster's previous config: it takes no new stream, drains (GOAWAY,
      // closed once its streams are done) and leaves the pool, so it neither lingers until its
      // idle timeout nor holds a slot of max_connections.
      c->Drain();
      return true;
    }
    return false;
  });
  for (const auto& connection : connections) {
    if (connection->CanOpenStream(target.max_concurrent_streams)) {
      connection->AssignStream();
      return OpenedStream{NewHttp2UpstreamStream(connection)};
    }
  }
  return std::nullopt;
}

std::shared_ptr<Http2Connection> UpstreamPool::NewHttp2(const UpstreamTarget& target,
                                                        ConnectionSlot slot,
                                                        std::optional<Transport> transport) {
  const bool connected = transport.has_value();
  auto connection = std::make_shared<Http2Connection>(
      io_, connected ? std::move(*transport) : Transport(io_), Http2Connection::Role::kClient);
  connection->SetSlot(std::move(slot));
  connection->SetTls(target.tls);
  connection->SetIdleTimeout(target.idle_timeout, &target.stats->upstream_cx_idle_timeout);
  connection->SetMaxRequests(target.max_requests_per_connection);
  connection->SetMaxDuration(target.max_connection_duration,
                             &target.stats->upstream_cx_max_duration_reached);
  auto& entry = Entry(http2_, target.cluster, target.peer);
  // A stream slot freed (or a connection closed, freeing a place under max_connections) wakes
  // a request waiting for one. The entry's key outlives the connection.
  connection->OnCapacity([this, &key = entry.first](bool closed) {
    if (closed) {
      ConnectionClosed(key.first, key.second);
    } else {
      WakePending(key.first, &key.second);
    }
  });
  entry.second.push_back(connection);
  if (connected) asio::co_spawn(io_, connection->Start(target.stats), asio::detached);
  return connection;
}

std::optional<OpenedStream> UpstreamPool::OpenHttp2(const UpstreamTarget& target,
                                                    Clock::time_point deadline) {
  if (auto reused = ReuseHttp2(target)) return reused;
  ConnectionSlot slot = ConnectionSlot::Claim(target.stats, target.max_connections);
  if (!slot) {
    if (!Entry(http2_, target.cluster, target.peer).second.empty()) return std::nullopt;
    slot = ConnectionSlot::Force(target.stats);  // none to the host: one anyway
  }
  auto connection = NewHttp2(target, std::move(slot), std::nullopt);
  connection->AssignStream();
  asio::co_spawn(io_,
                 connection->Connect(target.peer, deadline, target.stats, target.tcp_keepalive),
                 asio::detached);
  return OpenedStream{NewHttp2UpstreamStream(std::move(connection))};
}

void UpstreamPool::Release(IdleConnections& idle, std::string_view cluster,
                           const tcp::endpoint& peer,
                           std::unique_ptr<UpstreamConnection> connection,
                           std::chrono::milliseconds idle_timeout) {
  if (idle.size() < kMaxIdlePerEndpoint) {
    connection->stream.tcp().expires_never();
    connection->released_at = Clock::now();
    connection->idle_until = connection->max_duration_at;  // the cluster may have changed
    if (idle_timeout.count() > 0) {
      connection->idle_until =
          std::min(connection->idle_until, connection->released_at + idle_timeout);
    }
    if (connection->idle_until != Clock::time_point::max()) {
      ScheduleIdleSweep(connection->idle_until);
    }
    idle.push_back(std::move(connection));
  }
  WakePending(cluster, &peer);
}

void UpstreamPool::TrimIdleAfterBurst() {
  for (auto& [key, idle] : idle_) {
    if (idle.size() > kIdleKeptWhenQuiet) {
      idle.erase(idle.begin(), idle.end() - kIdleKeptWhenQuiet);  // the front waited longest
    }
    for (const auto& connection : idle) {
      if (connection->buffer.size() == 0) connection->buffer.shrink_to_fit();  // frees it
      std::string().swap(connection->out);
    }
  }
}

void UpstreamPool::ScheduleIdleSweep(Clock::time_point at) {
  if (idle_sweep_at_ && *idle_sweep_at_ <= at) return;
  idle_sweep_at_ = at;
  idle_sweep_.expires_at(at);  // a pending wait ends with operation_aborted and does nothing
  idle_sweep_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    idle_sweep_at_.reset();
    SweepIdle();
  });
}

void UpstreamPool::SweepIdle() {
  const Clock::time_point now = Clock::now();
  Clock::time_point next = Clock::time_point::max();
  for (auto& [key, idle] : idle_) {
    std::erase_if(idle, [&](const std::unique_ptr<UpstreamConnection>& connection) {
      if (connection->idle_until > now) {
        next = std::min(next, connection->idle_until);
        return false;
      }
      CountIdleClose(*connection);
      return true;
    });
  }
  if (next != Clock::time_point::max()) ScheduleIdleSweep(next);
}

void UpstreamPool::CountIdleClose(const UpstreamConnection& connection) {
  std::atomic<uint64_t>& counter = connection.idle_until == connection.max_duration_at
                                       ? connection.stats->upstream_cx_max_duration_reached
                                       : connection.stats->upstream_cx_idle_timeout;
  counter.fetch_add(1, std::memory_order_relaxed);
}

namespace {

// A connected upstream socket's options: TCP_NODELAY, and the cluster's tcp_keepalive.
void ConfigureUpstreamSocket(tcp::socket& socket,
                             const std::optional<config::TcpKeepalive>& keepalive) {
  boost::system::error_code ec;  // best effort, as Envoy's socket options
  socket.set_option(tcp::no_delay(true), ec);
  if (!keepalive) return;
  socket.set_option(asio::socket_base::keep_alive(true), ec);
  const int fd = socket.native_handle();
  auto set = [fd](int option, const std::optional<uint32_t>& value) {
    if (!value) return;
    const int v = static_cast<int>(*value);
    ::setsockopt(fd, IPPROTO_TCP, option, &v, sizeof v);
  };
  set(TCP_KEEPCNT, keepalive->probes);
  set(TCP_KEEPIDLE, keepalive->time);
  set(TCP_KEEPINTVL, keepalive->interval);
}

}  // namespace

asio::awaitable<bool> ConnectUpstream(Transport& transport, const tcp::endpoint& peer,
                                      Clock::time_point deadline,
                                      const std::optional<config::TcpKeepalive>& keepalive,
                                      const config::TlsTransportSocket* tls, ClusterStats& stats) {
  boost::system::error_code ec;
  transport.tcp().expires_at(deadline);
  co_await transport.tcp().async_connect(peer, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    stats.upstream_cx_connect_fail.fetch_add(1, std::memory_order_relaxed);
    co_return false;
  }
  ConfigureUpstreamSocket(transport.socket(), keepalive);
  if (tls != nullptr) {
    const std::shared_ptr<const config::TlsContext> context = tls->Current();
    const bool handshaken =
        co_await transport.Handshake(*context, Transport::Role::kClient, stats.ssl, deadline);
    if (!handshaken) {
      stats.upstream_cx_connect_fail.fetch_add(1, std::memory_order_relaxed);
      co_return false;
    }
    transport.tcp().expires_at(deadline);  // as the caller left it
  }
  co_return true;
}

Protocol UpstreamProtocolOf(const config::ClusterConfig& cluster, Protocol downstream) {
  switch (cluster.protocol) {
    case config::UpstreamProtocol::kHttp2:
      return Protocol::kHttp2;
    case config::UpstreamProtocol::kDownstream:
      return downstream;
    case config::UpstreamProtocol::kHttp1:
    case config::UpstreamProtocol::kAlpn:  // HTTP/2 only once a connection's ALPN says so
      break;
  }
  return Protocol::kHttp1;
}

}  // namespace meshpilot::sidecar::server
