#pragma once

// One HTTP/2 connection (h2c) on nghttp2, as server (downstream) or client (upstream), living
// on the worker thread that owns its socket. The connection runs two coroutines: a reader that
// feeds nghttp2_session_mem_recv, and a writer that drains nghttp2_session_mem_send whenever
// something was queued. Streams are multiplexed; each Http2Stream is the state one exchange
// shares with the router: headers, body pieces, trailers, and two signals (something to read,
// room to write) that wake the coroutine waiting on it.
//
// Flow control is end to end: received DATA is acknowledged (WINDOW_UPDATE) only once the
// router has passed it on (nghttp2_session_consume), and a sender waits while more than a
// window's worth is queued for the peer, so no stream is ever buffered whole.

#include <nghttp2/nghttp2.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sidecar/config/cluster.h"
#include "sidecar/http/header_map.h"
#include "sidecar/server/connection_slot.h"
#include "sidecar/server/stream.h"
#include "sidecar/server/transport.h"
#include "sidecar/stats.h"

namespace meshpilot::sidecar::server {

class Http2Connection;

class Http2Stream {
 public:
  Http2Stream(boost::asio::io_context& io, std::shared_ptr<Http2Connection> connection);

  const http::HeaderMap& headers() const { return headers_; }
  http::HeaderMap& headers() { return headers_; }
  const http::HeaderMap& trailers() const { return trailers_; }
  bool closed() const { return closed_; }
  bool local_ended() const { return local_ended_; }
  // The peer ended the stream with its headers: no body, no trailers.
  bool ended_with_headers() const {
    return remote_ended_ && received_.empty() && trailers_.empty();
  }

  // Waits until the peer sent headers (or the stream closed) or `deadline` passed.
  boost::asio::awaitable<StreamError> WaitHeaders(Clock::time_point deadline);
  // Appends received body to `out` and gives its window back to the peer.
  boost::asio::awaitable<StreamError> ReadBody(std::string& out, bool& end,
                                               Clock::time_point deadline);

  // Response headers (server) with the body to follow unless `end_stream`.
  StreamError SubmitResponse(const http::HeaderMap& headers, bool end_stream);
  boost::asio::awaitable<StreamError> WriteBody(std::string_view data, bool end_stream);
  boost::asio::awaitable<StreamError> WriteTrailers(const http::HeaderMap& trailers);
  // RST_STREAM with `error_code` unless the stream is already closed.
  void Reset(uint32_t error_code);
  // Nobody reads this stream any more: what is buffered and what still arrives gives its window
  // back at once, so an unread body never starves the connection.
  void Discard();

  // What ended the stream, as the router classifies it.
  StreamError CloseReason() const;

  // Called when the peer abandons the stream (RST_STREAM, or the connection ends) before this
  // side ended it; empty: none.
  void OnAbandoned(std::function<void()> callback) { on_abandoned_ = std::move(callback); }

 private:
  friend class Http2Connection;
  static constexpr size_t kSendHighWater = 64 * 1024;

  boost::asio::awaitable<bool> Wait(boost::asio::steady_timer& signal,
                                    Clock::time_point deadline);
  // The stream closed with `error_code`: wakes its waiters, tells whoever asked if abandoned.
  void Close(uint32_t error_code, bool connect_failed);
  void NotifyAll();

  std::shared_ptr<Http2Connection> connection_;  // cleared when the stream closes
  int32_t id_ = -1;
  http::HeaderMap headers_;
  http::HeaderMap trailers_;
  bool headers_complete_ = false;
  std::string received_;
  bool remote_ended_ = false;
  bool discarding_ = false;
  // What the router queued for the peer, and whether the body (then trailers) ends it.
  std::string sending_;
  size_t sending_offset_ = 0;
  bool local_ended_ = false;
  std::optional<http::HeaderMap> pending_trailers_;
  bool closed_ = false;
  bool connect_failed_ = false;
  uint32_t close_error_ = 0;  // NGHTTP2_NO_ERROR, ..., as the stream closed
  std::function<void()> on_abandoned_;
  boost::asio::steady_timer readable_;
  boost::asio::steady_timer writable_;
};

class Http2Connection : public std::enable_shared_from_this<Http2Connection> {
 public:
  enum class Role { kServer, kClient };
  // A server calls this once a request's headers are complete.
  using RequestHandler = std::function<void(std::shared_ptr<Http2Stream>)>;

  Http2Connection(boost::asio::io_context& io, Transport transport, Role role,
                  RequestHandler on_request = nullptr);
  ~Http2Connection();
  Http2Connection(const Http2Connection&) = delete;
  Http2Connection& operator=(const Http2Connection&) = delete;

  // Server: serves until the connection ends; `preface` holds bytes already read.
  boost::asio::awaitable<void> Serve(std::string preface);
  // Client: connects, then runs until the connection ends. Streams opened before the connect
  // completes wait for it (and fail with kConnectFailure if it does not).
  boost::asio::awaitable<void> Connect(boost::asio::ip::tcp::endpoint peer,
                                       Clock::time_point deadline,
                                       std::shared_ptr<ClusterStats> stats,
                                       std::optional<config::TcpKeepalive> keepalive);
  // Client on a transport connected already (TLS whose ALPN chose h2): runs until the
  // connection ends.
  boost::asio::awaitable<void> Start(std::shared_ptr<ClusterStats> stats);

  // Client: whether another stream may go on this connection: no GOAWAY, stream ids left,
  // and below the peer's SETTINGS_MAX_CONCURRENT_STREAMS (and `local_limit` if not 0).
  // Nor once `max_requests` (max_requests_per_connection, if not 0) streams were assigned to it.
  bool CanOpenStream(uint32_t local_limit) const;
  // Client, before Connect: after this many streams (0: no limit), the connection takes no
  // more and drains once they are done.
  void SetMaxRequests(uint32_t max_requests) { max_requests_ = max_requests; }
  // Before Serve/Connect: `duration` after it starts (0: never), the connection drains
  // (DrainGracefully), counting in `counter` (Envoy's max_connection_duration).
  void SetMaxDuration(std::chrono::milliseconds duration, std::atomic<uint64_t>* counter) {
    max_duration_ = duration;
    max_durations_reached_ = counter;
  }
  // Client, before Connect: the cluster's TLS transport socket (null: plaintext), which Connect
  // uses and the pool compares, so a cluster whose TLS config changed opens new connections
  // (a certificate rotated by SDS does not: the socket is the same).
  void SetTls(std::shared_ptr<const config::TlsTransportSocket> tls) { tls_ = std::move(tls); }
  // Client, before Connect/Start: its place under the cluster's max_connections, given back
  // when the connection ends (or fails to connect).
  void SetSlot(ConnectionSlot slot) { slot_ = std::move(slot); }
  const std::shared_ptr<const config::TlsTransportSocket>& tls() const { return tls_; }
  // Client: the pool put a stream on this connection.
  void AssignStream() { ++assigned_; }
  // Client: called when the connection may take a stream it could not before (one of its
  // streams closed, the peer's SETTINGS arrived) with false, and once it closed with true:
  // the pool wakes the requests waiting for room.
  void OnCapacity(std::function<void(bool closed)> callback) { on_capacity_ = std::move(callback); }
  bool dead() const { return dead_; }
  // Client: a new stream with `headers`; the body follows unless `end_stream`.
  std::shared_ptr<Http2Stream> OpenStream(const http::HeaderMap& headers, bool end_stream);

  // GOAWAY naming the last stream taken; the connection closes once the streams in flight are
  // done (a server's, or a client's at max_requests_per_connection).
  void Drain();
  // Closes the connection now (a pending connect too): every open stream ends with a reset.
  void Close() { Terminate(/*connect_failed=*/false); }
  // A server's drain as Envoy's connection manager does it (idle_timeout,
  // max_connection_duration, max_requests_per_connection, its listener drained): GOAWAY with
  // the highest stream id first, a notice while streams racing it still come, then Drain after
  // the drain timeout. A client: Drain.
  void DrainGracefully();
  // Server, before Serve: the time between DrainGracefully's notice and the final GOAWAY.
  void SetDrainTimeout(std::chrono::milliseconds timeout) { drain_timeout_ = timeout; }
  // Before Serve/Connect: with no stream open for `timeout` (Envoy's idle_timeout; 0: never),
  // counting in `counter`, a server drains (DrainGracefully), a client sends GOAWAY and closes.
  void SetIdleTimeout(std::chrono::milliseconds timeout, std::atomic<uint64_t>* counter) {
    idle_timeout_ = timeout;
    idle_timeouts_ = counter;
  }

 private:
  friend class Http2Stream;

  void InitSession();
  boost::asio::awaitable<void> Run(std::string preface);
  boost::asio::awaitable<void> ReadLoop(std::string preface);
  boost::asio::awaitable<void> WriteLoop();
  boost::asio::awaitable<void> IdleLoop();
  // Wakes the writer: nghttp2 may have frames to send.
  void Flush();
  // The connection is gone: every open stream ends with `connect_failed` or a reset.
  void Terminate(bool connect_failed);
  Http2Stream* StreamOf(int32_t stream_id);

  // nghttp2 callbacks.
  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame*, void*);
  static int OnHeader(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t,
                      const uint8_t*, size_t, uint8_t, void*);
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame*, void*);
  static int OnDataChunkRecv(nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t, void*);
  static int OnStreamClose(nghttp2_session*, int32_t, uint32_t, void*);
  static ssize_t ReadBodySource(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*,
                                nghttp2_data_source*, void*);

  boost::asio::io_context& io_;
  Transport transport_;
  Role role_;
  RequestHandler on_request_;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, std::shared_ptr<Http2Stream>> streams_;
  boost::asio::steady_timer write_signal_;
  std::chrono::milliseconds idle_timeout_{0};
  std::atomic<uint64_t>* idle_timeouts_ = nullptr;
  boost::asio::steady_timer idle_timer_;  // cancelled when the last stream closes
  std::chrono::milliseconds max_duration_{0};
  std::atomic<uint64_t>* max_durations_reached_ = nullptr;
  boost::asio::steady_timer max_duration_timer_;
  std::chrono::milliseconds drain_timeout_{0};
  boost::asio::steady_timer drain_timer_;  // from the shutdown notice to the final GOAWAY
  bool goaway_received_ = false;
  bool shutdown_notice_sent_ = false;
  bool draining_ = false;  // the final GOAWAY is sent
  uint32_t max_requests_ = 0;  // client: max_requests_per_connection
  uint32_t assigned_ = 0;      // client: streams the pool put on it
  uint32_t opened_ = 0;        // client: streams opened
  bool dead_ = false;
  std::shared_ptr<ClusterStats> stats_;  // client: upstream_cx_* of its cluster
  ConnectionSlot slot_;                  // client
  std::function<void(bool closed)> on_capacity_;
  std::shared_ptr<const config::TlsTransportSocket> tls_;
};

}  // namespace meshpilot::sidecar::server
