// The upstream pool's pending queue (max_connections / max_pending_requests), on real loopback
// connections to small origins, in one io_context driven by the test.

#include <catch2/catch.hpp>

#include <memory>
#include <optional>
#include <string>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "sidecar/http/header_map.h"
#include "sidecar/server/upstream_pool.h"

namespace meshpilot::sidecar::server {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Answers every request on every connection with an empty 200.
class Origin {
 public:
  explicit Origin(asio::io_context& io) : acceptor_(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {
    asio::co_spawn(io, Accept(), asio::detached);
  }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }

 private:
  asio::awaitable<void> Accept() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      asio::co_spawn(acceptor_.get_executor(), Serve(std::move(socket)), asio::detached);
    }
  }
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

  tcp::acceptor acceptor_;
};

// A request through the pool: Open, and once told to, one exchange and the stream's end.
struct Request {
  std::optional<OpenedStream> opened;
  bool exchanged = false;
};

asio::awaitable<void> OpenStream(UpstreamPool& pool, UpstreamTarget target, Request& request) {
  request.opened = co_await pool.Open(target, Protocol::kHttp1, Clock::now() + std::chrono::seconds(30));
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

TEST_CASE("upstream pool: a released connection wakes the pending request for its endpoint") {
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
  // Two requests queue, the one for endpoint a first.
  Request waits_for_a, waits_for_b;
  asio::co_spawn(io, OpenStream(pool, to_a, waits_for_a), asio::detached);
  RunUntil(io, [&] { return target.stats->upstream_rq_pending_active == 1; });
  asio::co_spawn(io, OpenStream(pool, to_b, waits_for_b), asio::detached);
  RunUntil(io, [&] { return target.stats->upstream_rq_pending_active == 2; });

  // b's connection goes back to the pool: the request for b takes it at once, in the handlers
  // that are ready now (poll), without waiting for its periodic recheck; a's keeps waiting.
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
  CHECK(target.stats->upstream_rq_pending_active == 0);
  CHECK(target.stats->upstream_rq_pending_total == 2);
}

}  // namespace
}  // namespace meshpilot::sidecar::server
