#include "sidecar/http/http1_headers.h"

#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace meshpilot::sidecar::http {

namespace beast_http = boost::beast::http;

namespace {

std::string_view SV(boost::beast::string_view s) { return {s.data(), s.size()}; }
boost::beast::string_view BV(std::string_view s) { return {s.data(), s.size()}; }

void AddFields(const beast_http::fields& fields, HeaderMap& out, bool skip_host) {
  for (const auto& field : fields) {
    if (skip_host && field.name() == beast_http::field::host) continue;
    out.Add(SV(field.name_string()), SV(field.value()));
  }
}

void CopyRegular(const HeaderMap& headers, beast_http::fields& out) {
  for (const auto& [name, value] : headers.entries()) {
    if (!name.empty() && name.front() != ':') out.insert(BV(name), BV(value));
  }
}

}  // namespace

HeaderMap FromHttp1Request(const beast_http::request_header<>& request) {
  HeaderMap headers{{":method", SV(request.method_string())},
                    {":scheme", "http"},
                    {":path", SV(request.target())}};
  if (auto host = request.find(beast_http::field::host); host != request.end()) {
    headers.Add(":authority", SV(host->value()));
  }
  AddFields(request, headers, /*skip_host=*/true);
  return headers;
}

HeaderMap FromHttp1Response(const beast_http::response_header<>& response) {
  HeaderMap headers{{":status", std::to_string(response.result_int())}};
  AddFields(response, headers, /*skip_host=*/false);
  return headers;
}

beast_http::request_header<> ToHttp1Request(const HeaderMap& headers) {
  beast_http::request_header<> request;
  request.version(11);
  request.method_string(BV(headers.GetOr(":method", "GET")));
  request.target(BV(headers.GetOr(":path", "/")));
  if (auto authority = headers.Get(":authority")) {
    request.set(beast_http::field::host, BV(*authority));
  }
  CopyRegular(headers, request);
  return request;
}

beast_http::response_header<> ToHttp1Response(const HeaderMap& headers, unsigned version) {
  beast_http::response_header<> response;
  response.version(version);
  response.result(headers.Status());
  CopyRegular(headers, response);
  return response;
}

std::string FrameHttp1Body(std::string_view data, bool chunked, bool end) {
  if (!chunked) return std::string(data);
  std::string framed;
  if (!data.empty()) {
    absl::StrAppendFormat(&framed, "%x\r\n", data.size());
    framed.append(data);
    framed.append("\r\n");
  }
  if (end) framed.append("0\r\n\r\n");
  return framed;
}

HeaderMap Http1Trailers(const beast_http::fields& fields, size_t header_fields) {
  HeaderMap trailers;
  size_t i = 0;
  for (const auto& field : fields) {
    if (i++ >= header_fields) trailers.Add(SV(field.name_string()), SV(field.value()));
  }
  return trailers;
}

std::string Http1LastChunk(const HeaderMap& trailers) {
  std::string out = "0\r\n";
  for (const auto& [name, value] : trailers.entries()) {
    if (name.empty() || name.front() == ':') continue;
    absl::StrAppend(&out, name, ": ", value, "\r\n");
  }
  out.append("\r\n");
  return out;
}

}  // namespace meshpilot::sidecar::http
