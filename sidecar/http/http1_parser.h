#pragma once

// Beast's HTTP/1.1 parser (basic_parser) delivering straight into a HeaderMap and the caller's
// string, without Beast's field container in between: the request line becomes :method,
// :scheme and :path, Host becomes :authority, the status line :status. Body pieces are
// appended to the string given to BodyInto, at most kBodyPiece bytes per read (Beast reports
// need_buffer when a piece is full, as with its buffer_body). A chunked body's trailers are
// kept apart, in trailers(), when they will travel (enable_trailers, as Envoy); else they are
// parsed and dropped, with nothing allocated for them.

#include <boost/beast/http/basic_parser.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "sidecar/http/header_map.h"

namespace meshpilot::sidecar::http {

// The body limit of the parsers here: bodies are streamed, so none; not boost::none, since
// Boost 1.74's parser compares the content length against an empty optional and reports
// body_limit for every body.
inline constexpr uint64_t kUnlimitedBody = std::numeric_limits<uint64_t>::max();
inline constexpr size_t kBodyPiece = 16384;

template <bool isRequest>
class Http1Parser final : public boost::beast::http::basic_parser<isRequest> {
 public:
  explicit Http1Parser(bool keep_trailers = false);

  // The message head; the caller may take it once the header is done.
  HeaderMap& headers() { return headers_; }
  unsigned version() const { return version_; }
  boost::beast::http::verb method() const { return method_; }  // requests
  unsigned status() const { return status_; }                   // responses
  // The trailers of a chunked body, once it is done; empty unless keep_trailers.
  HeaderMap& trailers() { return trailers_; }

  // The next body piece (up to kBodyPiece bytes) is appended to `out`.
  void BodyInto(std::string& out) {
    body_out_ = &out;
    body_room_ = kBodyPiece;
  }

 private:
  using error_code = boost::beast::error_code;
  using string_view = boost::beast::string_view;

  void on_request_impl(boost::beast::http::verb method, string_view method_str,
                       string_view target, int version, error_code& ec) override;
  void on_response_impl(int code, string_view reason, int version, error_code& ec) override;
  void on_field_impl(boost::beast::http::field name, string_view name_string, string_view value,
                     error_code& ec) override;
  void on_header_impl(error_code&) override { header_done_ = true; }
  void on_body_init_impl(const boost::optional<uint64_t>&, error_code&) override {}
  size_t on_body_impl(string_view body, error_code& ec) override;
  void on_chunk_header_impl(uint64_t, string_view, error_code&) override {}
  size_t on_chunk_body_impl(uint64_t, string_view body, error_code& ec) override {
    return on_body_impl(body, ec);
  }
  void on_finish_impl(error_code&) override {}

  HeaderMap headers_;
  unsigned version_ = 11;
  boost::beast::http::verb method_ = boost::beast::http::verb::unknown;
  unsigned status_ = 0;
  bool header_done_ = false;  // fields after the header are chunked trailers
  const bool keep_trailers_;
  HeaderMap trailers_;
  std::string* body_out_ = nullptr;
  size_t body_room_ = 0;
};

extern template class Http1Parser<true>;
extern template class Http1Parser<false>;

}  // namespace meshpilot::sidecar::http
