#pragma once

// What Envoy's envoy.filters.listener.http_inspector learns from a plaintext connection's first
// bytes: the HTTP/2 client preface (prior knowledge: "h2c") or an HTTP/1.0 / HTTP/1.1 request
// line ("http/1.0", "http/1.1"), for filter chains' application_protocols. Pure: the data path
// peeks (MSG_PEEK, nothing consumed) and asks again with more bytes until the answer is not
// kNeedMoreData. Bounded: it decides within kMaxHttpInspectSize bytes.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace meshpilot::sidecar::filters {

// A request line not ended within this many bytes is not taken for HTTP.
inline constexpr size_t kMaxHttpInspectSize = 1024;

enum class HttpInspection {
  kNeedMoreData,  // plausible so far: peek again once more bytes arrived
  kNotHttp,
  kHttp10,
  kHttp11,
  kHttp2,  // the client preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
};

HttpInspection InspectHttp(std::span<const uint8_t> data);

// The application protocol a filter chain matches for `inspection`: "http/1.0", "http/1.1",
// "h2c"; empty when it found none.
std::string_view ApplicationProtocolOf(HttpInspection inspection);

}  // namespace meshpilot::sidecar::filters
