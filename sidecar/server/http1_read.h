#pragma once

// Reading an HTTP/1.1 message with Beast's parser from a Transport: what the buffer already
// holds is parsed first, and the socket is read only when the parser needs more. This is
// Beast's http::async_read loop without its composed operations, so a message whose bytes
// are already buffered (a body that came with its head, a pipelined request) completes
// without a trip through the scheduler.

#include <chrono>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>

#include "sidecar/server/stream.h"
#include "sidecar/server/transport.h"

namespace meshpilot::sidecar::server {

// An HTTP/1.1 exchange's read or write error as the router sees it: a deadline that passed,
// else a reset.
inline StreamError Http1StreamError(const boost::system::error_code& ec) {
  return ec == boost::beast::error::timeout ? StreamError::kTimeout : StreamError::kReset;
}

// The most one read takes from the socket. A connection's buffer grows only while the peer
// keeps filling the reads, as with a large body (whose pieces, http::kBodyPiece, bound it in
// practice); ShrinkHttp1Buffer gives the room back once the exchange is over.
inline constexpr size_t kMaxRead = 65536;

// Frees the room of an empty buffer grown past what a usual message head needs (4 KiB), so
// that a connection left idle after a large body does not keep it.
inline void ShrinkHttp1Buffer(boost::beast::flat_buffer& buffer) {
  if (buffer.size() == 0 && buffer.capacity() > 4096) buffer.shrink_to_fit();
}

enum class Http1ReadUntil {
  kHeader,  // the header is done
  kMessage, // the message is done, or (need_buffer) the parser's body piece is full
};

// Parses what `buffer` holds, without reading: true once `until` is reached or parsing failed
// (`ec`, need_buffer included), false when the parser needs more bytes than are buffered.
template <bool isRequest>
bool ParseBuffered(boost::beast::flat_buffer& buffer,
                   boost::beast::http::basic_parser<isRequest>& parser, Http1ReadUntil until,
                   boost::system::error_code& ec);

// Returns as Beast's http::async_read_header / async_read do: end_of_stream for a connection
// closed before a message began, need_buffer when a body piece is full (not an error for
// the callers here), beast::error::timeout once `deadline` passes.
template <bool isRequest>
boost::asio::awaitable<boost::system::error_code> ReadHttp1(
    Transport& stream, boost::beast::flat_buffer& buffer,
    boost::beast::http::basic_parser<isRequest>& parser, Http1ReadUntil until,
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max());

extern template bool ParseBuffered<true>(boost::beast::flat_buffer&,
                                         boost::beast::http::basic_parser<true>&, Http1ReadUntil,
                                         boost::system::error_code&);
extern template bool ParseBuffered<false>(boost::beast::flat_buffer&,
                                          boost::beast::http::basic_parser<false>&,
                                          Http1ReadUntil, boost::system::error_code&);
extern template boost::asio::awaitable<boost::system::error_code> ReadHttp1<true>(
    Transport&, boost::beast::flat_buffer&, boost::beast::http::basic_parser<true>&,
    Http1ReadUntil, std::chrono::steady_clock::time_point);
extern template boost::asio::awaitable<boost::system::error_code> ReadHttp1<false>(
    Transport&, boost::beast::flat_buffer&, boost::beast::http::basic_parser<false>&,
    Http1ReadUntil, std::chrono::steady_clock::time_point);

}  // namespace meshpilot::sidecar::server
