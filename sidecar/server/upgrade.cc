#include "sidecar/server/upgrade.h"

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "sidecar/http/http1_headers.h"
#include "sidecar/http/http1_parser.h"
#include "sidecar/server/http1_read.h"
#include "sidecar/server/relay.h"
#include "sidecar/server/upstream_pool.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
namespace beast = boost::beast;

std::string UpgradeRequested(const http::HeaderMap& request) {
  const std::string_view upgrade = request.GetOr("upgrade", "");
  // h2c is not an upgrade to proxy: Envoy's codec drops it and serves HTTP/1.1 (curl --http2
  // asks for it on http:// URLs).
  if (upgrade.empty() || absl::EqualsIgnoreCase(absl::string_view(upgrade.data(), upgrade.size()),
                                                "h2c")) {
    return {};
  }
  for (const auto& [name, value] : request.entries()) {
    if (name != "connection") continue;
    for (absl::string_view token :
         absl::StrSplit(absl::string_view(value.data(), value.size()), ',')) {
      if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(token), "upgrade")) {
        return std::string(upgrade);
      }
    }
  }
  return {};
}

bool UpgradeAllowed(std::string_view type, const config::HttpChain& chain,
                    const config::RouteAction& route) {
  const std::string key = absl::AsciiStrToLower(absl::string_view(type.data(), type.size()));
  if (auto it = route.upgrades.find(key); it != route.upgrades.end()) return it->second;
  auto it = chain.upgrades.find(key);
  return it != chain.upgrades.end() && it->second;
}

asio::awaitable<UpgradeResponse> SendUpgrade(Worker& worker, const config::ClusterConfig& cluster,
                                             ClusterStats& stats,
                                             const asio::ip::tcp::endpoint& peer,
                                             const http::HeaderMap& request,
                                             std::string_view body, Clock::time_point deadline) {
  UpgradeResponse response;
  auto transport = std::make_unique<Transport>(worker.io());
  if (!co_await ConnectUpstream(*transport, peer,
                                std::min(deadline, Clock::now() + cluster.connect_timeout),
                                cluster.tcp_keepalive, cluster.tls.get(), stats)) {
    response.error = StreamError::kConnectFailure;
    co_return response;
  }
  transport->tcp().expires_never();
  std::string head;
  http::AppendHttp1RequestHead(request, head);
  http::EndHttp1Head(head);
  head.append(body);
  if (co_await transport->Write(asio::buffer(head))) {
    response.error = StreamError::kReset;
    co_return response;
  }
  beast::flat_buffer buffer;
  std::optional<http::Http1Parser<false>> parser;
  for (;;) {
    parser.emplace();
    const boost::system::error_code ec =
        co_await ReadHttp1(*transport, buffer, *parser, Http1ReadUntil::kHeader, deadline);
    if (ec) {
      response.error = Http1StreamError(ec);
      co_return response;
    }
    // 100 Continue and the like: the final answer follows.
    if (parser->status() >= 200 || parser->status() == 101) break;
  }
  response.headers = std::move(parser->headers());
  if (parser->status() == 101) {
    response.early = beast::buffers_to_string(buffer.data());  // past the head
    response.upstream = std::move(transport);
    co_return response;
  }
  while (!parser->is_done()) {
    parser->BodyInto(response.body);
    boost::system::error_code ec =
        co_await ReadHttp1(*transport, buffer, *parser, Http1ReadUntil::kMessage, deadline);
    if (ec == beast::http::error::need_buffer) continue;
    if (ec) {
      response.error = Http1StreamError(ec);
      co_return response;
    }
  }
  co_return response;
}

asio::awaitable<void> RunTunnel(Worker& worker, DownstreamStream::Tunnel downstream,
                                UpgradeResponse& upstream, ClusterStats& stats,
                                std::chrono::milliseconds idle) {
  std::string out;
  http::AppendHttp1ResponseHead(upstream.headers, 11, out);
  http::EndHttp1Head(out);
  out += upstream.early;
  if (co_await downstream.transport->Write(asio::buffer(out))) co_return;
  stats.upstream_cx_rx_bytes_total.fetch_add(upstream.early.size(), std::memory_order_relaxed);
  if (!downstream.early.empty()) {
    if (co_await upstream.upstream->Write(asio::buffer(downstream.early))) co_return;
    stats.upstream_cx_tx_bytes_total.fetch_add(downstream.early.size(),
                                               std::memory_order_relaxed);
  }
  co_await Relay(worker.io(), *downstream.transport, *upstream.upstream,
                 {stats.upstream_cx_tx_bytes_total, nullptr, stats.upstream_cx_rx_bytes_total,
                  nullptr},
                 idle);
}

}  // namespace meshpilot::sidecar::server
