#include "sidecar/http/http1_headers.h"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/status.hpp>

#include <cstring>
#include <iterator>
#include <ostream>
#include <string_view>

namespace meshpilot::sidecar::http {

namespace beast_http = boost::beast::http;

namespace {

std::string_view SV(boost::beast::string_view s) { return {s.data(), s.size()}; }

bool IsRegular(std::string_view name) { return !name.empty() && name.front() != ':'; }

size_t FieldSize(std::string_view name, std::string_view value) {
  return name.size() + value.size() + 4;
}

// "name: value\r\n" at `p`, which has room for it; returns the end.
char* WriteField(char* p, std::string_view name, std::string_view value) {
  std::memcpy(p, name.data(), name.size());
  p += name.size();
  *p++ = ':';
  *p++ = ' ';
  std::memcpy(p, value.data(), value.size());
  p += value.size();
  *p++ = '\r';
  *p++ = '\n';
  return p;
}

// One resize for all the fields, then plain copies: appends each check the capacity.
void AppendRegularFields(const HeaderMap& headers, std::string& out) {
  size_t size = 0;
  for (const auto& [name, value] : headers.entries()) {
    if (IsRegular(name)) size += FieldSize(name, value);
  }
  const size_t at = out.size();
  out.resize(at + size);
  char* p = out.data() + at;
  for (const auto& [name, value] : headers.entries()) {
    if (IsRegular(name)) p = WriteField(p, name, value);
  }
}

}  // namespace

void AppendHttp1Field(std::string_view name, std::string_view value, std::string& out) {
  // (So, unlike append, name and value must not point into `out`.)
  const size_t at = out.size();
  out.resize(at + FieldSize(name, value));
  WriteField(out.data() + at, name, value);
}

void AppendHttp1RequestHead(const HeaderMap& headers, std::string& out) {
  out.append(headers.GetOr(":method", "GET"));
  out.push_back(' ');
  out.append(headers.GetOr(":path", "/"));
  out.append(" HTTP/1.1\r\n");
  if (auto authority = headers.Get(":authority")) AppendHttp1Field("Host", *authority, out);
  AppendRegularFields(headers, out);
}

void AppendHttp1ResponseHead(const HeaderMap& headers, unsigned version, std::string& out) {
  const unsigned status = headers.Status();
  out.append("HTTP/");
  out.push_back(static_cast<char>('0' + version / 10));
  out.push_back('.');
  out.push_back(static_cast<char>('0' + version % 10));
  out.push_back(' ');
  out.append(std::to_string(status));
  out.push_back(' ');
  out.append(SV(beast_http::obsolete_reason(static_cast<beast_http::status>(status))));
  out.append("\r\n");
  AppendRegularFields(headers, out);
}

std::string_view FrameHttp1Body(size_t size, bool chunked, bool end, std::string& out) {
  if (!chunked) return {};
  if (size == 0) return end ? "0\r\n\r\n" : "";
  static constexpr char kHex[] = "0123456789abcdef";
  char digits[2 * sizeof(size_t)];
  char* first = std::end(digits);
  for (size_t n = size; n != 0; n >>= 4) *--first = kHex[n & 0xf];
  out.append(first, std::end(digits));
  out.append("\r\n");
  return end ? "\r\n0\r\n\r\n" : "\r\n";
}

void AppendHttp1LastChunk(const HeaderMap& trailers, std::string& out) {
  out.append("0\r\n");
  AppendRegularFields(trailers, out);
  out.append("\r\n");
}

}  // namespace meshpilot::sidecar::http
