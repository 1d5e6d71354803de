#include "sidecar/server/http1_read.h"

#include <algorithm>

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http/error.hpp>

#include "sidecar/server/stream.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

template <bool isRequest>
bool ParseBuffered(beast::flat_buffer& buffer, bhttp::basic_parser<isRequest>& parser,
                   Http1ReadUntil until, boost::system::error_code& ec) {
  // As Beast's read_header and read: a head alone, or as much of the body as one put takes.
  parser.eager(until == Http1ReadUntil::kMessage);
  while (until == Http1ReadUntil::kHeader ? !parser.is_header_done() : !parser.is_done()) {
    if (buffer.size() == 0) return false;
    buffer.consume(parser.put(buffer.data(), ec));
    if (ec == bhttp::error::need_more) {
      ec = {};
      return false;
    }
    if (ec) return true;  // need_buffer included
  }
  return true;
}

template <bool isRequest>
asio::awaitable<boost::system::error_code> ReadHttp1(Transport& stream,
                                                     beast::flat_buffer& buffer,
                                                     bhttp::basic_parser<isRequest>& parser,
                                                     Http1ReadUntil until,
                                                     std::chrono::steady_clock::time_point deadline) {
  boost::system::error_code ec;
  bool yielded = false;
  // Beast's hint is the buffer's free room, at least 512 bytes: a buffer the parser keeps
  // draining never grows, and a large body would come 512 bytes per recv. A read that fills
  // its room asks for twice as much next time (up to kMaxRead), so the buffer grows to what
  // the peer sends.
  size_t want = 0;
  while (!ParseBuffered(buffer, parser, until, ec)) {
    const size_t limit = buffer.max_size() - buffer.size();
    if (limit == 0) co_return bhttp::error::buffer_overflow;
    const size_t size = std::min(std::max(beast::read_size(buffer, kMaxRead), want), limit);
    size_t n = 0;
    if (!yielded && ExchangeCount::in_flight() > 1) {
      // Under load, let the handlers already queued run first: the bytes awaited here are
      // often in by then, and one recv takes them, with no read through Asio (its operation,
      // a post of the completion, a round through the scheduler). Alone, there is nothing to
      // let run, and a round through the scheduler would cost an epoll_wait.
      yielded = true;
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
      if (!stream.tls()) n = stream.ReadNow(buffer.prepare(size), ec);
      if (ec == asio::error::would_block) ec = {};
    }
    if (n == 0 && !ec) {
      n = co_await stream.ReadSome(buffer.prepare(size), ec, deadline);
      // The deadline was this read's: a write after it (a streamed request body over TLS,
      // which goes through Beast's timed stream) must not inherit it.
      if (deadline != std::chrono::steady_clock::time_point::max()) stream.tcp().expires_never();
    }
    buffer.commit(n);
    if (n == size) want = std::min(2 * size, kMaxRead);
    if (ec == asio::error::eof) {
      if (!parser.got_some()) co_return bhttp::error::end_of_stream;
      ec = {};
      parser.put_eof(ec);  // the caller sees the close on its next read
      co_return ec;
    }
    if (ec) co_return ec;
  }
  co_return ec;
}

template bool ParseBuffered<true>(beast::flat_buffer&, bhttp::basic_parser<true>&, Http1ReadUntil,
                                  boost::system::error_code&);
template bool ParseBuffered<false>(beast::flat_buffer&, bhttp::basic_parser<false>&,
                                   Http1ReadUntil, boost::system::error_code&);
template asio::awaitable<boost::system::error_code> ReadHttp1<true>(
    Transport&, beast::flat_buffer&, bhttp::basic_parser<true>&, Http1ReadUntil,
    std::chrono::steady_clock::time_point);
template asio::awaitable<boost::system::error_code> ReadHttp1<false>(
    Transport&, beast::flat_buffer&, bhttp::basic_parser<false>&, Http1ReadUntil,
    std::chrono::steady_clock::time_point);

}  // namespace meshpilot::sidecar::server
