#include "sidecar/http/http1_parser.h"

#include <algorithm>
#include <string_view>

namespace meshpilot::sidecar::http {

namespace beast_http = boost::beast::http;

namespace {

std::string_view SV(boost::beast::string_view s) { return {s.data(), s.size()}; }

}  // namespace

template <bool isRequest>
Http1Parser<isRequest>::Http1Parser(bool keep_trailers) : keep_trailers_(keep_trailers) {
  headers_.Reserve(16);  // the usual message head in one allocation
  this->body_limit(kUnlimitedBody);
}

template <bool isRequest>
void Http1Parser<isRequest>::on_request_impl(beast_http::verb method, string_view method_str,
                                             string_view target, int version, error_code&) {
  method_ = method;
  version_ = static_cast<unsigned>(version);
  headers_.Add(":method", SV(method_str));
  headers_.Add(":scheme", "http");
  headers_.Add(":path", SV(target));
}

template <bool isRequest>
void Http1Parser<isRequest>::on_response_impl(int code, string_view, int version, error_code&) {
  status_ = static_cast<unsigned>(code);
  version_ = static_cast<unsigned>(version);
  headers_.Add(":status", std::to_string(code));
}

template <bool isRequest>
void Http1Parser<isRequest>::on_field_impl(beast_http::field name, string_view name_string,
                                           string_view value, error_code&) {
  if (header_done_) {
    if (keep_trailers_) trailers_.Add(SV(name_string), SV(value));  // a chunked body's trailers
    return;
  }
  if (isRequest && name == beast_http::field::host) {
    // The first Host is the authority.
    if (!headers_.Has(":authority")) headers_.Add(":authority", SV(value));
    return;
  }
  headers_.Add(SV(name_string), SV(value));
}

template <bool isRequest>
size_t Http1Parser<isRequest>::on_body_impl(string_view body, error_code& ec) {
  const size_t n = body_out_ == nullptr ? 0 : std::min(body_room_, body.size());
  if (n > 0) {
    body_out_->append(body.data(), n);
    body_room_ -= n;
  }
  if (n < body.size()) ec = beast_http::error::need_buffer;
  return n;
}

template class Http1Parser<true>;
template class Http1Parser<false>;

}  // namespace meshpilot::sidecar::http
