#pragma once

// Header work on requests and responses of either protocol: Envoy's request/response header
// mutations, hop-by-hop header removal, and request ids.

#include <array>
#include <chrono>
#include <random>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>

#include "sidecar/config/route.h"
#include "sidecar/http/header_map.h"

namespace meshpilot::sidecar::router {

// What the commands of header values (config::HeaderValuePart) read, for one request.
struct HeaderValueContext {
  boost::asio::ip::tcp::endpoint downstream_remote;
  boost::asio::ip::tcp::endpoint downstream_local;  // the original destination
  std::string_view protocol;                        // HTTP/1.1 or HTTP/2
  std::string_view upstream_cluster;                // empty until one is chosen
  const http::HeaderMap* request = nullptr;
  std::chrono::system_clock::time_point start_time;
};

// Values with commands are evaluated against context; as Envoy, one that comes out empty is
// not added. Without a context they are not added either.
void ApplyHeaderMutations(const config::HeaderMutations& mutations, http::HeaderMap& headers,
                          const HeaderValueContext* context = nullptr);

std::string FormatHeaderValue(const std::vector<config::HeaderValuePart>& format,
                              const HeaderValueContext& context);

// Removes what describes one hop, not the message: Connection and the headers it names,
// Keep-Alive, Proxy-Connection, Upgrade, Transfer-Encoding, Trailer, and TE unless it is
// exactly "trailers" (gRPC needs it end to end; Envoy keeps it too). The codec that sends the
// message adds its own framing.
void StripHopByHop(http::HeaderMap& headers);

// The host of a mirrored request, as Envoy's: "host" -> "host-shadow",
// "host:port" -> "host-shadow:port".
std::string ShadowHost(std::string_view host);

// A random version-4 UUID, as Envoy's x-request-id: 36 characters, no allocation.
struct RequestId {
  std::array<char, 36> text;
  std::string_view view() const { return {text.data(), text.size()}; }
};
RequestId NewRequestId(std::mt19937_64& rng);

}  // namespace meshpilot::sidecar::router
