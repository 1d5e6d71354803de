// The http_inspector's parser on request lines and the h2c preface, whole, cut short and
// broken; listener filters' filter_disabled; and the chains Istio's inbound passthrough picks
// by the application protocol it finds.

#include <catch2/catch.hpp>

#include <string>

#include "sidecar/config/listener.h"
#include "sidecar/filters/http_inspector.h"
#include "tests/sidecar/proto_json.h"

namespace meshpilot::sidecar {
namespace {

using filters::HttpInspection;

HttpInspection Inspect(std::string_view text) {
  return filters::InspectHttp(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

TEST_CASE("http_inspector: HTTP/1.0, HTTP/1.1 and the h2c preface") {
  CHECK(Inspect("GET / HTTP/1.1\r\nHost: web\r\n\r\n") == HttpInspection::kHttp11);
  CHECK(Inspect("POST /upload?a=b HTTP/1.0\r\n") == HttpInspection::kHttp10);
  CHECK(Inspect("M-SEARCH * HTTP/1.1\r\n") == HttpInspection::kHttp11);
  CHECK(Inspect("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == HttpInspection::kHttp2);
  CHECK(filters::ApplicationProtocolOf(HttpInspection::kHttp11) == "http/1.1");
  CHECK(filters::ApplicationProtocolOf(HttpInspection::kHttp10) == "http/1.0");
  CHECK(filters::ApplicationProtocolOf(HttpInspection::kHttp2) == "h2c");
  CHECK(filters::ApplicationProtocolOf(HttpInspection::kNotHttp).empty());
}

TEST_CASE("http_inspector: every prefix of a request waits for more, and decides alike") {
  for (std::string_view whole : {std::string_view("GET /a/b HTTP/1.1\r\n"),
                                 std::string_view("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")}) {
    const HttpInspection decided = Inspect(whole);
    for (size_t n = 1; n < whole.size(); ++n) {
      INFO(whole.substr(0, n));
      CHECK(Inspect(whole.substr(0, n)) == HttpInspection::kNeedMoreData);
    }
    CHECK(decided != HttpInspection::kNeedMoreData);
  }
}

TEST_CASE("http_inspector: other protocols are decided on their first bytes") {
  CHECK(Inspect("select 1") == HttpInspection::kNotHttp);  // not a method
  CHECK(Inspect("SSH-2.0-OpenSSH_9.2\r\n") == HttpInspection::kNotHttp);
  CHECK(Inspect("\x16\x03\x01\x00\x05") == HttpInspection::kNotHttp);  // a TLS record
  CHECK(Inspect("GETX / HTTP/1.1\r\n") == HttpInspection::kNotHttp);
  CHECK(Inspect("GET  / HTTP/1.1\r\n") == HttpInspection::kNotHttp);  // empty target
  CHECK(Inspect("GET /\x01 HTTP/1.1\r\n") == HttpInspection::kNotHttp);
  CHECK(Inspect("GET / HTTP/2.0\r\n") == HttpInspection::kNotHttp);
  CHECK(Inspect("GET / HTTP/1.1\n") == HttpInspection::kNotHttp);
  CHECK(Inspect("PRI * HTTP/2.0\r\n\r\nXX") == HttpInspection::kNotHttp);
  // A request line that does not end within the bound is not taken for HTTP.
  const std::string long_line = "GET /" + std::string(filters::kMaxHttpInspectSize, 'a');
  CHECK(Inspect(long_line) == HttpInspection::kNotHttp);
  CHECK(Inspect(long_line.substr(0, filters::kMaxHttpInspectSize - 1)) ==
        HttpInspection::kNeedMoreData);
}

std::shared_ptr<const config::ListenerConfig> Listener(const std::string& filters,
                                                       const std::string& chains) {
  auto listener = config::ParseListener(testing::FromJson<envoy::config::listener::v3::Listener>(
      R"({"name": "virtualInbound", "address": {"socket_address": {"address": "0.0.0.0",
          "port_value": 15006}}, "use_original_dst": true, "listener_filters": [)" +
      filters + R"(], "filter_chains": [)" + chains + "]}"));
  REQUIRE(listener.ok());
  return *listener;
}

std::string TcpChain(const std::string& name, const std::string& match) {
  return R"({"name": ")" + name + R"(", "filter_chain_match": )" + match +
         R"(, "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
           "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
           "stat_prefix": "s", "cluster": "c"}}]})";
}

TEST_CASE("listener filters: filter_disabled by destination port") {
  auto listener = Listener(R"({"name": "envoy.filters.listener.tls_inspector",
        "filter_disabled": {"destination_port_range": {"start": 8080, "end": 8081}}},
      {"name": "envoy.filters.listener.http_inspector",
        "filter_disabled": {"or_match": {"rules": [
          {"destination_port_range": {"start": 8080, "end": 8081}},
          {"not_match": {"destination_port_range": {"start": 9000, "end": 9100}}}]}}})",
                           TcpChain("any", "{}"));
  CHECK_FALSE(listener->tls_inspector.RunsFor(8080));
  CHECK(listener->tls_inspector.RunsFor(9000));
  CHECK_FALSE(listener->http_inspector.RunsFor(8080));
  CHECK_FALSE(listener->http_inspector.RunsFor(443));
  CHECK(listener->http_inspector.RunsFor(9050));
  auto bad = config::ParseListener(testing::FromJson<envoy::config::listener::v3::Listener>(
      R"({"name": "l", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 1}},
          "listener_filters": [{"name": "envoy.filters.listener.http_inspector",
            "filter_disabled": {"or_match": {"rules": [
              {"destination_port_range": {"start": 9, "end": 9}}, {"any_match": true}]}}}],
          "filter_chains": [)" + TcpChain("any", "{}") + "]}"));
  CHECK(bad.status().message() ==
        "listener_filters[0].filter_disabled.or_match.rules[0].destination_port_range: [9, 9) is "
        "not a range of ports");
}

TEST_CASE("filter chains: Istio's inbound passthrough, HTTP by the http_inspector's protocol") {
  auto listener = Listener(R"({"name": "envoy.filters.listener.tls_inspector"},
                              {"name": "envoy.filters.listener.http_inspector"})",
                           TcpChain("inbound|9000||", R"({"destination_port": 9000})") + "," +
                               TcpChain("virtualInbound-catchall-http",
                                        R"({"transport_protocol": "raw_buffer",
                                            "application_protocols": ["http/1.1", "h2c"]})") +
                               "," + TcpChain("virtualInbound", R"({"transport_protocol": "raw_buffer"})") +
                               "," + TcpChain("virtualInbound-tls", R"({"transport_protocol": "tls"})"));
  auto pick = [&](uint16_t port, std::string_view transport, std::vector<std::string> alpn) {
    config::ConnectionMatchInput input{
        .destination = boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("10.1.0.2"), port),
        .source = boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("10.1.0.9"), 40000),
        .transport_protocol = transport,
        .application_protocols = &alpn};
    const config::FilterChain* chain = listener->ChainFor(input);
    return chain == nullptr ? std::string("none") : chain->name;
  };
  CHECK(pick(8080, "raw_buffer", {"http/1.1"}) == "virtualInbound-catchall-http");
  CHECK(pick(8080, "raw_buffer", {"h2c"}) == "virtualInbound-catchall-http");
  CHECK(pick(8080, "raw_buffer", {"http/1.0"}) == "virtualInbound");
  CHECK(pick(8080, "raw_buffer", {}) == "virtualInbound");
  CHECK(pick(8080, "tls", {"h2"}) == "virtualInbound-tls");
  CHECK(pick(9000, "raw_buffer", {"http/1.1"}) == "inbound|9000||");  // a declared port
}

}  // namespace
}  // namespace meshpilot::sidecar
