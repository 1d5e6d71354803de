// The HTTP connection manager's codec choice: with codec_type AUTO (Envoy's default) a TLS
// connection whose ALPN chose h2, or one that opens with the HTTP/2 client preface
// ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", h2c with prior knowledge) is HTTP/2, anything else
// HTTP/1.1.

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <algorithm>
#include <optional>
#include <string_view>

#include "sidecar/server/connection.h"
#include "sidecar/server/http1_codec.h"
#include "sidecar/server/http2_codec.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

namespace {

constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr auto kPrefaceTimeout = std::chrono::seconds(300);

// Reads until the first bytes tell the preface from anything else: whether the connection is
// HTTP/2, or nullopt if it closed, failed or timed out first. Nothing may read it after that:
// a read that met the end leaves Asio to wait for another readiness event, which never comes,
// so a second read would wait forever (a client that connects and closes at once, as TCP
// health checks do, would stay in CLOSE-WAIT).
asio::awaitable<std::optional<bool>> StartsWithHttp2Preface(Transport& stream,
                                                            beast::flat_buffer& buffer) {
  stream.tcp().expires_after(kPrefaceTimeout);
  for (;;) {
    const std::string_view seen(static_cast<const char*>(buffer.data().data()), buffer.size());
    const size_t n = std::min(seen.size(), kHttp2Preface.size());
    if (seen.substr(0, n) != kHttp2Preface.substr(0, n)) co_return false;
    if (n == kHttp2Preface.size()) co_return true;
    boost::system::error_code ec;
    size_t read = co_await stream.async_read_some(buffer.prepare(4096),
                                                  asio::redirect_error(asio::use_awaitable, ec));
    buffer.commit(read);
    if (ec) co_return std::nullopt;
  }
}

}  // namespace

asio::awaitable<void> RunHttpSession(Worker& worker, Transport stream, ConnectionInfo info,
                                     std::string listener_name, ListenerEntry listener,
                                     const config::HttpChain& chain) {
  beast::flat_buffer buffer;
  bool http2 = chain.codec == config::HttpChain::Codec::kHttp2;
  if (chain.codec == config::HttpChain::Codec::kAuto && stream.alpn() == "h2") {
    http2 = true;  // over TLS, ALPN decides, as Envoy's AUTO codec
  } else if (chain.codec == config::HttpChain::Codec::kAuto) {
    const std::optional<bool> preface = co_await StartsWithHttp2Preface(stream, buffer);
    if (!preface) co_return;  // gone before its first request: nothing to answer
    http2 = *preface;
  }
  if (http2) {
    stream.tcp().expires_never();
    std::string preface = beast::buffers_to_string(buffer.data());
    co_await ServeHttp2(worker, std::move(stream), std::move(preface), info,
                        std::move(listener_name), std::move(listener), chain);
  } else {
    co_await ServeHttp1(worker, stream, buffer, info, listener_name, listener, chain);
  }
}

}  // namespace meshpilot::sidecar::server
