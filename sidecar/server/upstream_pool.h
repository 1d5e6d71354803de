#pragma once

// Upstream connections of one worker (so without locks), by cluster and endpoint:
// - HTTP/1.1: one request at a time per connection; idle ones are kept for reuse (and closed
//   once idle for the cluster's idle_timeout), and one the peer closed meanwhile is noticed
//   before reuse and dropped.
// - HTTP/2: connections shared by streams; a stream goes on the first connection that has
//   room under the peer's SETTINGS_MAX_CONCURRENT_STREAMS (and the cluster's
//   max_concurrent_streams) and has not received GOAWAY, else on a new connection.
// A connection takes its place under max_connections (ConnectionSlot) when it is created, so
// connecting ones count. When max_connections (across workers) leaves no connection to use, a
// request waits in the cluster's pending queue, up to max_pending_requests of them (across
// workers), as Envoy's connection pools do. Waiting is event-driven, on this worker's own connections (a worker
// with none to the endpoint opens one anyway, so there always is one to wait for): the
// oldest request for an endpoint is woken when this worker releases an HTTP/1.1 connection
// to it or one of its HTTP/2 connections there has room (a stream closed, the peer's
// SETTINGS came); when a connection closes or fails to connect, the oldest for its endpoint
// (which may be left with none, and opens one) and the oldest of the cluster (a place under
// max_connections is free). A woken request that leaves the queue wakes the next, and one
// woken in vain goes back to its head. A request whose client gives up leaves the queue
// at once (upstream_rq_cancelled); one whose deadline passes, then.

#include <chrono>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include "sidecar/config/cluster.h"
#include "sidecar/server/connection_slot.h"
#include "sidecar/server/stream.h"
#include "sidecar/server/transport.h"
#include "sidecar/stats.h"

namespace meshpilot::sidecar::server {

class Http2Connection;

struct UpstreamConnection {
  // Counted in `open_in_pool` (the pool's connections to its cluster and host, connecting
  // ones too) until destroyed.
  UpstreamConnection(boost::asio::io_context& io, std::shared_ptr<ClusterStats> stats,
                     ConnectionSlot slot, std::shared_ptr<uint32_t> open_in_pool);
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  Transport stream;
  boost::beast::flat_buffer buffer;
  std::string out;  // request heads, reused from one request to the next
  std::shared_ptr<ClusterStats> stats;
  // Its place under max_connections, taken before it connects; an HTTP/2 connection made from
  // it (ALPN chose h2) takes it over.
  ConnectionSlot slot;
  // The TLS transport socket it was made with (null: plaintext): a cluster whose TLS config
  // changed does not reuse it (an SDS rotation keeps the socket: it is reused).
  std::shared_ptr<const config::TlsTransportSocket> tls;
  std::shared_ptr<uint32_t> open_in_pool;
  bool reused = false;
  uint32_t requests = 0;  // exchanges started on it, for max_requests_per_connection
  Clock::time_point released_at;  // when it last went idle
  Clock::time_point idle_until = Clock::time_point::max();  // in the pool: its idle_timeout
  // Its max_connection_duration passes: closed then if idle, else after its exchange.
  Clock::time_point max_duration_at = Clock::time_point::max();
};

// Where one attempt goes.
struct UpstreamTarget {
  std::string_view cluster;  // the caller's, for as long as Open runs
  boost::asio::ip::tcp::endpoint peer;
  std::shared_ptr<ClusterStats> stats;
  uint32_t max_connections = 0;  // circuit breakers
  uint32_t max_pending_requests = 0;
  std::chrono::milliseconds connect_timeout{0};
  std::chrono::milliseconds idle_timeout{0};  // 0: none
  uint32_t max_concurrent_streams = 0;  // HTTP/2, 0: the peer's limit
  bool head_request = false;            // HTTP/1.1: the response has no body
  bool http1_trailers = false;          // HTTP/1.1: read response trailers (enable_trailers)
  uint32_t max_requests_per_connection = 0;  // 0: no limit
  std::optional<config::TcpKeepalive> tcp_keepalive;
  std::chrono::milliseconds max_connection_duration{0};  // 0: none
  std::shared_ptr<const config::TlsTransportSocket> tls;  // null: plaintext
  bool alpn = false;  // auto_config: a new TLS connection is HTTP/2 if ALPN chose h2
  // HTTP/1.1: ask the kernel whether any idle connection is still open before reusing it,
  // however recently it was released (a request whose body cannot be sent again: a mirror).
  bool check_idle = false;

  // The cluster's limits; `peer` is for the caller to set.
  static UpstreamTarget Of(const std::string& cluster, const config::ClusterConfig& config,
                           std::shared_ptr<ClusterStats> stats, bool head_request) {
    const config::CircuitBreakers& breakers = config.circuit_breakers;
    return UpstreamTarget{cluster,
                          {},
                          std::move(stats),
                          breakers.max_connections,
                          breakers.max_pending_requests,
                          config.connect_timeout,
                          config.idle_timeout,
                          config.http2.max_concurrent_streams,
                          head_request,
                          config.http1.enable_trailers,
                          config.max_requests_per_connection,
                          config.tcp_keepalive,
                          config.max_connection_duration,
                          config.tls,
                          config.protocol == config::UpstreamProtocol::kAlpn && config.tls};
  }
  static UpstreamTarget Of(std::string&& cluster, const config::ClusterConfig& config,
                           std::shared_ptr<ClusterStats> stats, bool head_request) = delete;
};

// Connects `transport` to `peer` by `deadline` (left set on the stream), with the cluster's
// socket options (TCP_NODELAY, tcp_keepalive), then the TLS handshake with `tls`'s current
// context when it is set;
// counts upstream_cx_connect_fail when either fails (a handshake failure is a connect
// failure, as in Envoy).
boost::asio::awaitable<bool> ConnectUpstream(Transport& transport,
                                             const boost::asio::ip::tcp::endpoint& peer,
                                             Clock::time_point deadline,
                                             const std::optional<config::TcpKeepalive>& keepalive,
                                             const config::TlsTransportSocket* tls,
                                             ClusterStats& stats);

// A request's way out of the pending queue when its client gives up: the router calls Cancel()
// from its downstream's OnAbandoned callback, and the request leaves the queue instead of
// holding its place until a connection frees, as Envoy cancels a pool request.
struct PendingCancellation {
  // Watched for its client's close while the request waits (HTTP/1.1 notices it only then).
  DownstreamStream* downstream = nullptr;
  bool cancelled = false;
  boost::asio::steady_timer* waiting = nullptr;  // the pool's, while the request waits

  void Cancel() {
    cancelled = true;
    if (waiting != nullptr) waiting->cancel();
  }
};

// The protocol a request goes upstream in: the cluster's, or the downstream's.
Protocol UpstreamProtocolOf(const config::ClusterConfig& cluster, Protocol downstream);

// A pool's idle HTTP/1.1 connections to one endpoint of one cluster.
using IdleConnections = std::vector<std::unique_ptr<UpstreamConnection>>;

struct OpenedStream {
  std::unique_ptr<UpstreamStream> stream;
  StreamError error = StreamError::kNone;
  // max_connections was reached and the pending queue is full (upstream_rq_pending_overflow).
  bool overflow = false;
  // The client gave up (PendingCancellation) before a connection was found.
  bool cancelled = false;
};

class UpstreamPool {
 public:
  explicit UpstreamPool(boost::asio::io_context& io) : io_(io), idle_sweep_(io) {}

  // A stream to `target` in `protocol`. HTTP/1.1 connects here (kConnectFailure on failure);
  // an HTTP/2 connection connects in the background and its streams fail with
  // kConnectFailure if it cannot. Connecting takes until the cluster's connect_timeout or
  // `deadline`; a request in the pending queue waits until `deadline` (then kTimeout, without
  // a stream) or until `cancellation` is cancelled (then `cancelled`, without a stream).
  boost::asio::awaitable<OpenedStream> Open(const UpstreamTarget& target, Protocol protocol,
                                            Clock::time_point deadline,
                                            PendingCancellation* cancellation = nullptr);

  // A stream on a connection the pool holds already, without waiting: an idle HTTP/1.1 one, or
  // an HTTP/2 one with room for a stream. Without a stream if there is none (Open then opens
  // one or queues). The data path asks here first, which costs no coroutine.
  OpenedStream Reuse(const UpstreamTarget& target, Protocol protocol);

  // An HTTP/1.1 connection of `cluster` to `peer` whose exchange completed cleanly, for the next
  // request on `idle` (the list it was opened for); a pending request for `peer` may take it.
  void Release(IdleConnections& idle, std::string_view cluster,
               const boost::asio::ip::tcp::endpoint& peer,
               std::unique_ptr<UpstreamConnection> connection,
               std::chrono::milliseconds idle_timeout);
  // A connection of `cluster` to `peer` closed (or failed to connect): the oldest pending
  // request for `peer` (which may have no connection there left, and then opens one) and the
  // oldest of the cluster (which may open one under max_connections) are woken.
  void ConnectionClosed(std::string_view cluster, const boost::asio::ip::tcp::endpoint& peer) {
    WakePending(cluster, &peer);
    WakePending(cluster, nullptr);
  }
  // The worker has no downstream connection left: idle HTTP/1.1 connections beyond
  // kIdleKeptWhenQuiet per endpoint, the longest idle first, are closed, and those kept give
  // back their read buffer and head, so that the connections of a burst do not keep its memory
  // (see Worker::ConnectionClosed). Those blocks, allocated among the burst's own, would
  // otherwise keep the allocator from returning the pages around them.
  void TrimIdleAfterBurst();
  static constexpr size_t kIdleKeptWhenQuiet = 128;

  // The idle HTTP/1.1 connections of `cluster` to `peer`, if any were ever released there.
  const IdleConnections* Idle(std::string_view cluster,
                              const boost::asio::ip::tcp::endpoint& peer) const {
    auto it = idle_.find(KeyView{cluster, peer});
    return it == idle_.end() ? nullptr : &it->second;
  }

 private:
  // By cluster and endpoint; looked up by a view of the cluster name, so a request copies no
  // string to find its connections.
  using Key = std::pair<std::string, boost::asio::ip::tcp::endpoint>;
  using KeyView = std::pair<std::string_view, boost::asio::ip::tcp::endpoint>;
  struct KeyLess {
    using is_transparent = void;
    static KeyView View(const Key& key) { return {key.first, key.second}; }
    static const KeyView& View(const KeyView& key) { return key; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const { return View(a) < View(b); }
  };
  template <class Value>
  using Map = std::map<Key, Value, KeyLess>;
  // The entry (key and value) of `cluster` and `peer`, created empty if there is none.
  template <class Value>
  static typename Map<Value>::value_type& Entry(Map<Value>& map, std::string_view cluster,
                                                const boost::asio::ip::tcp::endpoint& peer) {
    auto it = map.find(KeyView{cluster, peer});
    if (it == map.end()) it = map.emplace(Key{std::string(cluster), peer}, Value()).first;
    return *it;
  }
  // Idle connections kept per endpoint under load (Envoy keeps all, up to max_connections;
  // nginx's keepalive cache is a number like this); kIdleKeptWhenQuiet once the worker is quiet.
  static constexpr size_t kMaxIdlePerEndpoint = 1024;

  // Empty when max_connections leaves no connection to use.
  boost::asio::awaitable<std::optional<OpenedStream>> OpenHttp1(const UpstreamTarget& target,
                                                                Clock::time_point connect_deadline);
  // A stream on an idle HTTP/1.1 connection to `target` that is still usable, if there is one.
  std::optional<OpenedStream> ReuseHttp1(const UpstreamTarget& target);
  // The stream of an HTTP/1.1 exchange on `connection`, which returns to `entry`'s idle list
  // (`target`'s cluster and endpoint) when it completes cleanly.
  OpenedStream Http1Stream(Map<IdleConnections>::value_type& entry, const UpstreamTarget& target,
                           std::unique_ptr<UpstreamConnection> connection);
  std::optional<OpenedStream> OpenHttp2(const UpstreamTarget& target,
                                        Clock::time_point connect_deadline);
  // A stream on an HTTP/2 connection to `target` with room for one, if there is one.
  std::optional<OpenedStream> ReuseHttp2(const UpstreamTarget& target);
  // A new HTTP/2 connection to `target` holding `slot`, on `transport` when connected already.
  std::shared_ptr<Http2Connection> NewHttp2(const UpstreamTarget& target, ConnectionSlot slot,
                                            std::optional<Transport> transport);
  // Waits in the queue (at its head if `first`) until woken, `until`, or cancelled; whether
  // it was woken.
  boost::asio::awaitable<bool> WaitPending(const UpstreamTarget& target, Clock::time_point until,
                                           PendingCancellation* cancellation, bool first);
  // Wakes the oldest pending request of `cluster` for `peer` (null: for any endpoint).
  void WakePending(std::string_view cluster, const boost::asio::ip::tcp::endpoint* peer);

  boost::asio::io_context& io_;
  Map<IdleConnections> idle_;  // entries are never removed: streams hold on to theirs
  Map<std::shared_ptr<uint32_t>> http1_open_;  // idle and busy
  Map<std::vector<std::shared_ptr<Http2Connection>>> http2_;
  // Closes the idle HTTP/1.1 connections whose idle_timeout (or max_connection_duration) has
  // passed, and schedules the next sweep for the earliest of the others.
  void SweepIdle();
  // An idle connection closed at its idle_until: counted as an idle timeout or max duration.
  static void CountIdleClose(const UpstreamConnection& connection);
  void ScheduleIdleSweep(Clock::time_point at);
  boost::asio::steady_timer idle_sweep_;
  std::optional<Clock::time_point> idle_sweep_at_;  // when the pending sweep runs
  // Pending requests of this worker by cluster, oldest first: each waits on its timer for a
  // connection to its endpoint.
  struct PendingWaiter {
    boost::asio::steady_timer timer;
    boost::asio::ip::tcp::endpoint peer;
    bool woken = false;
  };
  std::map<std::string, std::list<PendingWaiter*>, std::less<>> pending_;
};

}  // namespace meshpilot::sidecar::server
