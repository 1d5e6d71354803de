#include "sidecar/server/http1_codec.h"

#include <optional>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>

#include "sidecar/http/http1_headers.h"
#include "sidecar/server/router_filter.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::redirect_error;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

class Http1DownstreamStream final : public DownstreamStream {
 public:
  Http1DownstreamStream(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                        bhttp::request_parser<bhttp::buffer_body>& parser, bool keep_alive,
                        bool enable_trailers)
      : stream_(stream),
        buffer_(buffer),
        parser_(parser),
        version_(parser.get().version()),
        keep_alive_(keep_alive && parser.get().keep_alive()),
        enable_trailers_(enable_trailers),
        header_fields_(static_cast<size_t>(std::distance(parser.get().begin(), parser.get().end()))),
        headers_(http::FromHttp1Request(parser.get().base())) {
    if (beast::iequals(parser.get()[bhttp::field::expect], "100-continue")) {
      headers_.Remove("expect");
      continue_pending_ = !parser.is_done();
    }
  }

  // The connection may carry another request.
  bool reusable() const { return keep_alive_ && response_done_ && !failed_ && parser_.is_done(); }

  Protocol protocol() const override { return Protocol::kHttp1; }
  http::HeaderMap& request_headers() override { return headers_; }
  std::optional<uint64_t> request_body_length() const override {
    if (parser_.is_done()) return 0;
    if (parser_.content_length()) return *parser_.content_length();
    return std::nullopt;
  }

  asio::awaitable<bool> ReadBody(std::string& out, bool& end) override {
    if (parser_.is_done()) {
      end = true;
      co_return true;
    }
    if (continue_pending_) {
      continue_pending_ = false;
      static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      if (!co_await Write({kContinue, sizeof(kContinue) - 1})) co_return false;
    }
    char chunk[16384];
    auto& body = parser_.get().body();
    body.data = chunk;
    body.size = sizeof(chunk);
    boost::system::error_code ec;
    co_await bhttp::async_read(stream_, buffer_, parser_, redirect_error(use_awaitable, ec));
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec) {
      failed_ = true;
      co_return false;
    }
    out.append(chunk, sizeof(chunk) - body.size);
    end = parser_.is_done();
    if (end && enable_trailers_ && parser_.chunked()) {
      request_trailers_ = http::Http1Trailers(parser_.get(), header_fields_);
    }
    co_return true;
  }
  const http::HeaderMap& request_trailers() const override { return request_trailers_; }

  asio::awaitable<bool> WriteHeaders(http::HeaderMap headers, bool end_stream) override {
    const unsigned status = headers.Status();
    bhttp::response<bhttp::empty_body> response(http::ToHttp1Response(headers, version_));
    const bool no_body = parser_.get().method() == bhttp::verb::head || status == 204 ||
                         status == 304 || (status >= 100 && status < 200);
    if (!headers.Has("content-length") && !no_body) {
      if (end_stream) {
        response.set(bhttp::field::content_length, "0");
      } else if (version_ >= 11) {
        response.set(bhttp::field::transfer_encoding, "chunked");
        chunked_ = true;
      } else {
        keep_alive_ = false;  // HTTP/1.0 has no chunks: the end of the body is the close
      }
    }
    // A response that leaves the request body unread must close the connection.
    keep_alive_ = keep_alive_ && parser_.is_done();
    response.keep_alive(keep_alive_);
    bhttp::response_serializer<bhttp::empty_body> serializer(response);
    boost::system::error_code ec;
    co_await bhttp::async_write_header(stream_, serializer, redirect_error(use_awaitable, ec));
    if (ec) {
      failed_ = true;
      co_return false;
    }
    response_done_ = end_stream;
    co_return true;
  }

  asio::awaitable<bool> WriteBody(std::string_view data, bool end_stream) override {
    const std::string framed = http::FrameHttp1Body(data, chunked_, end_stream);
    if (!framed.empty()) {
      const bool written = co_await Write(framed);
      if (!written) co_return false;
    }
    response_done_ = end_stream;
    co_return true;
  }

  // Envoy drops trailers towards HTTP/1.1 clients unless enable_trailers asks to encode them
  // in the last chunk: so does this.
  asio::awaitable<bool> WriteTrailers(http::HeaderMap trailers) override {
    if (!enable_trailers_ || !chunked_) co_return co_await WriteBody({}, true);
    const bool written = co_await Write(http::Http1LastChunk(trailers));
    response_done_ = written;
    co_return written;
  }

  void Reset() override {
    failed_ = true;
    boost::system::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

 private:
  asio::awaitable<bool> Write(std::string_view bytes) {
    boost::system::error_code ec;
    co_await asio::async_write(stream_, asio::buffer(bytes.data(), bytes.size()),
                               redirect_error(use_awaitable, ec));
    if (ec) failed_ = true;
    co_return !ec;
  }

  beast::tcp_stream& stream_;
  beast::flat_buffer& buffer_;
  bhttp::request_parser<bhttp::buffer_body>& parser_;
  const unsigned version_;
  bool keep_alive_;
  const bool enable_trailers_;
  const size_t header_fields_;  // Beast appends a chunked body's trailers after them
  http::HeaderMap headers_;
  http::HeaderMap request_trailers_;
  bool continue_pending_ = false;
  bool chunked_ = false;
  bool response_done_ = false;
  bool failed_ = false;
};

}  // namespace

asio::awaitable<void> ServeHttp1(Worker& worker, beast::tcp_stream& stream,
                                 beast::flat_buffer& buffer, const ConnectionInfo& info,
                                 const std::string& listener_name, const ListenerEntry& listener,
                                 const config::HttpChain& chain) {
  RouterFilter router(worker, info, listener, chain);
  for (;;) {
    bhttp::request_parser<bhttp::buffer_body> parser;
    parser.body_limit(http::kUnlimitedBody);
    parser.header_limit(64 * 1024);
    // The HTTP connection manager's idle_timeout, between requests.
    if (chain.idle_timeout.count() > 0) {
      stream.expires_after(chain.idle_timeout);
    } else {
      stream.expires_never();
    }
    boost::system::error_code ec;
    co_await bhttp::async_read_header(stream, buffer, parser, redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == beast::error::timeout) {
        listener.stats->downstream_cx_idle_timeout.fetch_add(1, std::memory_order_relaxed);
      }
      if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
          ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
        bhttp::response<bhttp::string_body> bad{bhttp::status::bad_request, 11};
        bad.set(bhttp::field::server, "envoy");
        bad.keep_alive(false);
        bad.prepare_payload();
        listener.stats->downstream_rq_class[4].fetch_add(1, std::memory_order_relaxed);
        co_await bhttp::async_write(stream, bad, redirect_error(use_awaitable, ec));
      }
      break;
    }
    stream.expires_never();
    std::shared_ptr<const ProxyConfig> config = worker.store().Load();
    const ListenerEntry* current = config->FindListener(listener_name);
    const bool keep_alive =
        current != nullptr && current->config == listener.config && !worker.draining();
    Http1DownstreamStream down(stream, buffer, parser, keep_alive, chain.enable_trailers);
    co_await router.Serve(down);
    if (!down.reusable()) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace meshpilot::sidecar::server
