// The upstream pool's pending queue (max_connections / max_pending_requests), on real loopback
// connections to small origins, in one io_context driven by the test.

#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "sidecar/http/header_map.h"
#include "sidecar/server/http2_connection.h"
#include "sidecar/server/upstream_pool.h"

namespace meshpilot::sidecar::server {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Accepts connections on a loopback port and hands each to `serve`.
class LoopbackAcceptor {
 public:
  LoopbackAcceptor(asio::io_context& io, std::function<void(tcp::socket)> serve)
      : acceptor_(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)), serve_(std::move(serve)) {
    asio::co_spawn(io, Accept(), asio::detached);
  }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }

 private:
  asio::awaitable<void> Accept() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      serve_(std::move(socket));
    }
  }

  tcp::acceptor acceptor_;
  std::function<void(tcp::socket)> serve_;
};

// Answers every request on every connection with an empty 200.
class Origin {
 public:
  explicit Origin(asio::io_context& io)
      : acceptor_(io, [&io](tcp::socket socket) {
          asio::co_spawn(io, Serve(std::move(socket)), asio::detached);
        }) {}
  tcp::endpoint endpoint() const { return acceptor_.endpoint(); }

 private:
  static asio::awaitable<void> Serve(tcp::socket socket) {
    std::string in;
    for (;;) {
      boost::system::error_code ec;
      const size_t n = co_await asio::async_read_until(socket, asio::dynamic_buffer(in), "\r\n\r\n",
                                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      in.erase(0, n);
      static constexpr char kResponse[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
      co_await asio::async_write(socket, asio::buffer(kResponse, sizeof(kResponse) - 1),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
    }
  }

  LoopbackAcceptor acceptor_;
};

// An HTTP/2 origin (meshproxy's own server side) answering every stream with an empty 200
// after `delay`.
class Http2Origin {
 public:
  Http2Origin(asio::io_context& io, std::chrono::milliseconds delay)
      : acceptor_(io, [this, &io, delay](tcp::socket socket) {
          auto connection = std::make_shared<Http2Connection>(
              io, Transport(std::move(socket)), Http2Connection::Role::kServer,
              [&io, delay](std::shared_ptr<Http2Stream> stream) {
                auto timer = std::make_shared<asio::steady_timer>(io, delay);
                timer->async_wait([timer, stream](const boost::system::error_code&) {
                  stream->SubmitResponse(http::HeaderMap{{":status", "200"}}, true);
                });
              });
          asio::co_spawn(io, connection->Serve(""), asio::detached);
          connections_.push_back(std::move(connection));  // Serve holds no reference of its own
        }) {}
  tcp::endpoint endpoint() const { return acceptor_.endpoint(); }
  size_t connections() const { return connections_.size(); }

 private:
  std::vector<std::shared_ptr<Http2Connection>> connections_;
  LoopbackAcceptor acceptor_;  // after what it serves into
};

// A request through the pool: Open, and once told to, one exchange and the stream's end.
struct Request {
  std::optional<OpenedStream> opened;
  bool exchanged = false;
};

asio::awaitable<void> OpenStream(UpstreamPool& pool, UpstreamTarget target, Request& request,
                                 Protocol protocol = Protocol::kHttp1) {
  request.opened = co_await pool.Open(target, protocol, Clock::now() + std::chrono::seconds(30));
}

// (Catch's assertions throw, and a detached coroutine's exception is lost: the test checks
// `exchanged`.)
asio::awaitable<void> Exchange(Request& request) {
  UpstreamStream& up = *request.opened->stream;
  http::HeaderMap headers{{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "o"}};
  StreamError error = co_await up.SendHeaders(headers, true);
  http::HeaderMap response;
  bool ended = false;
  if (error == StreamError::kNone) {
    error = co_await up.ReadHeaders(response, ended, Clock::time_point::max());
  }
  if (error != StreamError::kNone || !ended) co_return;
  request.opened->stream.reset();  // a clean keep-alive exchange: back to the pool
  request.exchanged = true;
}

template <class Done>
void RunUntil(asio::io_context& io, Done done) {
  const auto give_up = Clock::now() + std::chrono::seconds(10);
  while (!done() && Clock::now() < give_up) io.run_one_for(std::chrono::milliseconds(100));
  REQUIRE(done());
}

TEST_CASE("upstream pool: pending requests are woken for their endpoint") {
  asio::io_context io;
  Origin a(io), b(io);
  UpstreamPool pool(io);
  const std::string cluster = "c";
  UpstreamTarget target;
  target.cluster = cluster;
  target.stats = std::make_shared<ClusterStats>();
  target.max_connections = 2;
  target.max_pending_requests = 10;
  target.connect_timeout = std::chrono::seconds(5);
  UpstreamTarget to_a = target, to_b = target;
  to_a.peer = a.endpoint();
  to_b.peer = b.endpoint();

  // One connection to each endpoint, in use: the cluster is at max_connections.
  Request first_a, first_b;
  asio::co_spawn(io, OpenStream(pool, to_a, first_a), asio::detached);
  asio::co_spawn(io, OpenStream(pool, to_b, first_b), asio::detached);
  RunUntil(io, [&] { return first_a.opened && first_b.opened; });
  REQUIRE(first_b.opened->stream != nullptr);
  Request waits_for_a, waits_for_b;
  auto queue = [&](const UpstreamTarget& to, Request& request) {
    const int64_t waiting = target.stats->upstream_rq_pending_active;
    asio::co_spawn(io, OpenStream(pool, to, request), asio::detached);
    RunUntil(io, [&] { return target.stats->upstream_rq_pending_active == waiting + 1; });
  };

  SECTION("a released connection goes to the request for its endpoint") {
    queue(to_a, waits_for_a);  // the oldest
    queue(to_b, waits_for_b);
    // b's connection goes back to the pool: the request for b takes it at once, in the
    // handlers that are ready now (poll), woken rather than by its deadline; a's keeps waiting.
    asio::co_spawn(io, Exchange(first_b), asio::detached);
    RunUntil(io, [&] { return first_b.exchanged; });
    io.poll();
    REQUIRE(waits_for_b.opened);
    CHECK(waits_for_b.opened->stream != nullptr);
    CHECK_FALSE(waits_for_a.opened);
    CHECK(target.stats->upstream_rq_pending_active == 1);
    CHECK(target.stats->upstream_cx_total == 2);  // b's request reused the connection

    // a's connection closes instead (not reused): the request for a may open one now.
    first_a.opened->stream->Reset();
    first_a.opened->stream.reset();
    RunUntil(io, [&] { return waits_for_a.opened.has_value(); });
    CHECK(waits_for_a.opened->stream != nullptr);
  }
  SECTION("a closed connection wakes the request for its endpoint, not only the oldest") {
    queue(to_b, waits_for_b);  // the oldest
    queue(to_a, waits_for_a);
    // a's connection closes: the request for a, left without a connection to a, opens one;
    // the oldest (b's) is woken too, but a's new connection, connecting, takes the place under
    // max_connections: b's waits on (at the head) until b's connection comes back. Nothing
    // else would wake a's.
    first_a.opened->stream->Reset();
    first_a.opened->stream.reset();
    RunUntil(io, [&] { return waits_for_a.opened.has_value(); });
    CHECK(waits_for_a.opened->stream != nullptr);
    io.poll();
    CHECK_FALSE(waits_for_b.opened);
    CHECK(target.stats->upstream_cx_active == 2);
    asio::co_spawn(io, Exchange(first_b), asio::detached);
    RunUntil(io, [&] { return waits_for_b.opened.has_value(); });
    CHECK(waits_for_b.opened->stream != nullptr);
    CHECK(target.stats->upstream_cx_total == 3);
  }
  CHECK(target.stats->upstream_rq_pending_active == 0);
  CHECK(target.stats->upstream_rq_pending_total == 2);
}

TEST_CASE("upstream pool: a quiet worker keeps a few idle connections, without their buffers") {
  asio::io_context io;
  Origin origin(io);
  UpstreamPool pool(io);
  const std::string cluster = "c";
  UpstreamTarget target;
  target.cluster = cluster;
  target.peer = origin.endpoint();
  target.stats = std::make_shared<ClusterStats>();
  target.max_connections = 1024;
  target.connect_timeout = std::chrono::seconds(5);

  // A burst: 200 exchanges at once, each on its own connection, all back in the pool after.
  constexpr size_t kBurst = 200;
  std::vector<Request> requests(kBurst);
  for (Request& request : requests) asio::co_spawn(io, OpenStream(pool, target, request), asio::detached);
  RunUntil(io, [&] {
    return std::all_of(requests.begin(), requests.end(), [](const Request& r) { return r.opened.has_value(); });
  });
  for (Request& request : requests) {
    REQUIRE(request.opened->stream != nullptr);
    asio::co_spawn(io, Exchange(request), asio::detached);
  }
  RunUntil(io, [&] {
    return std::all_of(requests.begin(), requests.end(), [](const Request& r) { return r.exchanged; });
  });
  const IdleConnections* idle = pool.Idle(cluster, target.peer);
  REQUIRE(idle != nullptr);
  REQUIRE(idle->size() == kBurst);
  CHECK(idle->front()->buffer.capacity() > 0);  // what the response was read into
  CHECK(idle->front()->out.capacity() > 0);     // the request head

  pool.TrimIdleAfterBurst();
  REQUIRE(idle->size() == UpstreamPool::kIdleKeptWhenQuiet);
  CHECK(target.stats->upstream_cx_active == static_cast<int64_t>(UpstreamPool::kIdleKeptWhenQuiet));
  for (const auto& connection : *idle) {
    CHECK(connection->buffer.capacity() == 0);
    CHECK(connection->out.capacity() <= std::string().capacity());
  }

  // A kept connection still serves: the next request reuses it.
  Request next;
  asio::co_spawn(io, OpenStream(pool, target, next), asio::detached);
  RunUntil(io, [&] { return next.opened.has_value(); });
  REQUIRE(next.opened->stream != nullptr);
  asio::co_spawn(io, Exchange(next), asio::detached);
  RunUntil(io, [&] { return next.exchanged; });
  CHECK(target.stats->upstream_cx_total == kBurst);
}

// Opens a stream and makes one exchange on it, as the router does.
asio::awaitable<void> OpenAndExchange(UpstreamPool& pool, UpstreamTarget target, Request& request) {
  co_await OpenStream(pool, target, request, Protocol::kHttp2);
  if (request.opened->stream != nullptr) co_await Exchange(request);
}

// Cluster "c" at `origin`, with room for one connection and 100 pending requests.
UpstreamTarget OneConnectionTo(const Http2Origin& origin) {
  UpstreamTarget target;
  target.cluster = "c";
  target.peer = origin.endpoint();
  target.stats = std::make_shared<ClusterStats>();
  target.max_connections = 1;
  target.max_pending_requests = 100;
  target.connect_timeout = std::chrono::seconds(5);
  return target;
}

TEST_CASE("upstream pool: HTTP/2 requests waiting for a stream slot are woken as slots free") {
  // One connection (max_connections 1) with room for one stream at a time, either by
  // max_concurrent_streams or because each connection takes one request: eight requests queue
  // and each is woken by the one before it ending (its stream closing, or its connection
  // closing). No wake may be lost: nothing else would wake them before their 30 s deadline.
  asio::io_context io;
  Http2Origin origin(io, std::chrono::milliseconds(5));
  UpstreamPool pool(io);
  UpstreamTarget target = OneConnectionTo(origin);
  bool one_request_per_connection = false;
  SECTION("max_concurrent_streams 1") { target.max_concurrent_streams = 1; }
  SECTION("max_requests_per_connection 1") {
    target.max_requests_per_connection = 1;
    one_request_per_connection = true;
  }
  // All at once: the first connection counts in upstream_cx_active from its creation, while
  // it connects, so the others queue instead of opening more.
  std::vector<Request> requests(8);
  const auto start = Clock::now();
  for (Request& request : requests) {
    asio::co_spawn(io, OpenAndExchange(pool, target, request), asio::detached);
  }
  RunUntil(io, [&] { return target.stats->upstream_rq_pending_active == 7; });
  CHECK(target.stats->upstream_cx_active == 1);
  RunUntil(io, [&] {
    return std::all_of(requests.begin(), requests.end(), [](const Request& r) { return r.exchanged; });
  });
  CHECK(Clock::now() - start < std::chrono::seconds(5));
  CHECK(target.stats->upstream_rq_pending_total == 7);
  CHECK(target.stats->upstream_rq_pending_active == 0);
  CHECK(origin.connections() == (one_request_per_connection ? 8u : 1u));
}

TEST_CASE("upstream pool: an HTTP/2 waiter that gives up passes its wake on") {
  // Three requests wait for the one stream slot; the first of them is woken by the slot
  // freeing but its client has just given up: the next one must get the slot.
  asio::io_context io;
  Http2Origin origin(io, std::chrono::milliseconds(50));
  UpstreamPool pool(io);
  UpstreamTarget target = OneConnectionTo(origin);
  target.max_concurrent_streams = 1;
  Request first;
  asio::co_spawn(io, OpenAndExchange(pool, target, first), asio::detached);
  RunUntil(io, [&] { return target.stats->upstream_cx_active == 1; });
  PendingCancellation gives_up;
  Request cancelled, second, third;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    cancelled.opened = co_await pool.Open(target, Protocol::kHttp2,
                                          Clock::now() + std::chrono::seconds(30), &gives_up);
  }, asio::detached);
  asio::co_spawn(io, OpenAndExchange(pool, target, second), asio::detached);
  asio::co_spawn(io, OpenAndExchange(pool, target, third), asio::detached);
  RunUntil(io, [&] { return target.stats->upstream_rq_pending_active == 3; });
  // The first exchange ends (its stream slot frees) and, in the same turn, the waiting
  // client gives up: its wake must reach the others.
  RunUntil(io, [&] { return first.exchanged; });
  gives_up.Cancel();
  RunUntil(io, [&] { return second.exchanged && third.exchanged; });
  REQUIRE(cancelled.opened.has_value());
  CHECK(cancelled.opened->cancelled);
  CHECK(target.stats->upstream_rq_cancelled == 1);
}

}  // namespace
}  // namespace meshpilot::sidecar::server
