#include "sidecar/server/http1_read.h"

#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http/error.hpp>

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

template <bool isRequest>
asio::awaitable<boost::system::error_code> ReadHttp1(Transport& stream,
                                                     beast::flat_buffer& buffer,
                                                     bhttp::basic_parser<isRequest>& parser,
                                                     Http1ReadUntil until,
                                                     std::chrono::steady_clock::time_point deadline) {
  const auto done = [&] {
    return until == Http1ReadUntil::kHeader ? parser.is_header_done() : parser.is_done();
  };
  boost::system::error_code ec;
  while (!done()) {
    if (buffer.size() > 0) {
      buffer.consume(parser.put(buffer.data(), ec));
      if (ec != bhttp::error::need_more) {
        if (ec) co_return ec;  // need_buffer included
        continue;
      }
      ec = {};
    }
    const size_t size = beast::read_size(buffer, 65536);
    if (size == 0) co_return bhttp::error::buffer_overflow;
    const size_t n = co_await stream.ReadSome(buffer.prepare(size), ec, deadline);
    buffer.commit(n);
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

template asio::awaitable<boost::system::error_code> ReadHttp1<true>(
    Transport&, beast::flat_buffer&, bhttp::basic_parser<true>&, Http1ReadUntil,
    std::chrono::steady_clock::time_point);
template asio::awaitable<boost::system::error_code> ReadHttp1<false>(
    Transport&, beast::flat_buffer&, bhttp::basic_parser<false>&, Http1ReadUntil,
    std::chrono::steady_clock::time_point);

}  // namespace meshpilot::sidecar::server
