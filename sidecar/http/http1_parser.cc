#include "sidecar/http/http1_parser.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"

namespace meshpilot::sidecar::http {

namespace beast_http = boost::beast::http;

namespace {

std::string_view SV(boost::beast::string_view s) { return {s.data(), s.size()}; }

// The names of the fields Beast knows, lower-cased once: the map keeps a view of one instead
// of a lower-cased copy of the name that came.
std::string_view LowerName(beast_http::field name) {
  // Never freed: a map may be destroyed after static destructors have run.
  static const std::vector<std::string>* const kNames = [] {
    constexpr auto kLast = static_cast<unsigned>(beast_http::field::xref);
    auto* names = new std::vector<std::string>(kLast + 1);
    for (unsigned i = 1; i <= kLast; ++i) {
      std::string& lower = (*names)[i];
      lower = SV(beast_http::to_string(static_cast<beast_http::field>(i)));
      absl::AsciiStrToLower(&lower);
    }
    return names;
  }();
  return (*kNames)[static_cast<unsigned>(name)];
}

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
  headers_.AddStatic(":method", SV(method_str));
  headers_.AddStatic(":scheme", "http");
  headers_.AddStatic(":path", SV(target));
}

template <bool isRequest>
void Http1Parser<isRequest>::on_response_impl(int code, string_view, int version, error_code&) {
  status_ = static_cast<unsigned>(code);
  version_ = static_cast<unsigned>(version);
  headers_.AddStatic(":status", std::to_string(code));
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
    if (!headers_.Has(":authority")) headers_.AddStatic(":authority", SV(value));
    return;
  }
  if (name == beast_http::field::unknown) {
    headers_.Add(SV(name_string), SV(value));
  } else {
    headers_.AddStatic(LowerName(name), SV(value));
  }
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
