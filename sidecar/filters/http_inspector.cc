#include "sidecar/filters/http_inspector.h"

#include <algorithm>

namespace meshpilot::sidecar::filters {
namespace {

constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// The methods an HTTP/1.x parser knows (llhttp's, as Envoy's inspector parses with it): any
// other first word is not HTTP, decided from its first bytes.
constexpr std::string_view kMethods[] = {
    "ACL",       "BIND",     "CHECKOUT",    "CONNECT",   "COPY",        "DELETE",   "GET",
    "HEAD",      "LINK",     "LOCK",        "M-SEARCH",  "MERGE",       "MKACTIVITY",
    "MKCALENDAR", "MKCOL",   "MOVE",        "NOTIFY",    "OPTIONS",     "PATCH",    "POST",
    "PROPFIND",  "PROPPATCH", "PURGE",      "PUT",       "QUERY",       "REBIND",   "REPORT",
    "SEARCH",    "SOURCE",   "SUBSCRIBE",   "TRACE",     "UNBIND",      "UNLINK",   "UNLOCK",
    "UNSUBSCRIBE"};

// The request-target: visible characters, none a space or a control character.
bool IsTargetChar(char c) { return c > ' ' && c != '\x7f'; }

// `prefix` is the start of `whole` (or the other way round): compares what both have.
bool Agrees(std::string_view prefix, std::string_view whole) {
  const size_t n = std::min(prefix.size(), whole.size());
  return prefix.substr(0, n) == whole.substr(0, n);
}

}  // namespace

HttpInspection InspectHttp(std::span<const uint8_t> bytes) {
  const std::string_view data(reinterpret_cast<const char*>(bytes.data()),
                              std::min(bytes.size(), kMaxHttpInspectSize));
  if (Agrees(data, kHttp2Preface)) {
    return data.size() >= kHttp2Preface.size() ? HttpInspection::kHttp2
                                               : HttpInspection::kNeedMoreData;
  }
  // method SP request-target SP "HTTP/1." ("0" | "1") CRLF, checked as far as it goes.
  const size_t space = data.find(' ');
  const std::string_view method = data.substr(0, space);
  if (space == std::string_view::npos) {
    const bool plausible = std::any_of(std::begin(kMethods), std::end(kMethods), [&](auto m) {
      return m.substr(0, method.size()) == method;
    });
    return plausible ? HttpInspection::kNeedMoreData : HttpInspection::kNotHttp;
  }
  if (std::find(std::begin(kMethods), std::end(kMethods), method) == std::end(kMethods)) {
    return HttpInspection::kNotHttp;
  }
  size_t i = space + 1;
  const size_t target = i;
  while (i < data.size() && IsTargetChar(data[i])) ++i;
  if (i < data.size() && (i == target || data[i] != ' ')) return HttpInspection::kNotHttp;
  if (i < data.size()) {
    constexpr std::string_view kVersion = "HTTP/1.";
    const std::string_view rest = data.substr(i + 1);
    if (!Agrees(rest, kVersion)) return HttpInspection::kNotHttp;
    if (rest.size() > kVersion.size()) {
      const char minor = rest[kVersion.size()];
      if (minor != '0' && minor != '1') return HttpInspection::kNotHttp;
      if (!Agrees(rest.substr(kVersion.size() + 1), "\r\n")) return HttpInspection::kNotHttp;
      if (rest.size() >= kVersion.size() + 3) {
        return minor == '1' ? HttpInspection::kHttp11 : HttpInspection::kHttp10;
      }
    }
  }
  return data.size() < kMaxHttpInspectSize ? HttpInspection::kNeedMoreData
                                           : HttpInspection::kNotHttp;
}

std::string_view ApplicationProtocolOf(HttpInspection inspection) {
  switch (inspection) {
    case HttpInspection::kHttp10: return "http/1.0";
    case HttpInspection::kHttp11: return "http/1.1";
    case HttpInspection::kHttp2: return "h2c";
    case HttpInspection::kNeedMoreData:
    case HttpInspection::kNotHttp: break;
  }
  return "";
}

}  // namespace meshpilot::sidecar::filters
