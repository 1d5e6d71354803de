#pragma once

// What Envoy's envoy.filters.listener.tls_inspector learns from a connection's first bytes:
// whether they are a TLS ClientHello and, if so, its SNI host name and ALPN protocols. Pure:
// the data path peeks the bytes (MSG_PEEK, nothing consumed) and asks again with more until the
// answer is not kNeedMoreData. Bounded: at most kMaxClientHelloSize bytes are looked at, and
// every length is checked against what is there, so no input can make it read out of bounds.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace meshpilot::sidecar::filters {

// Envoy's default max_client_hello_size.
inline constexpr size_t kMaxClientHelloSize = 16 * 1024;

struct TlsInspection {
  enum class Result {
    kNeedMoreData,  // a ClientHello so far: peek again once more bytes arrived
    kNotTls,        // not a ClientHello (or a malformed one): transport protocol "raw_buffer"
    kClientHello,   // transport protocol "tls"
    kTooLarge,      // a ClientHello over kMaxClientHelloSize: Envoy closes the connection
  };
  Result result = Result::kNeedMoreData;
  std::string server_name;                 // SNI host_name, lower-cased; empty without
  std::vector<std::string> alpn;           // application_layer_protocol_negotiation, in order
};

TlsInspection InspectClientHello(std::span<const uint8_t> data);

}  // namespace meshpilot::sidecar::filters
