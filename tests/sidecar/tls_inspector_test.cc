// The tls_inspector's ClientHello parser on real ClientHellos (captured from OpenSSL 3.0's
// `openssl s_client`) and on what is not one; filter chain matching as Envoy orders it.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "sidecar/config/listener.h"
#include "sidecar/filters/tls_inspector.h"
#include "tests/sidecar/proto_json.h"

namespace meshpilot::sidecar {
namespace {

using filters::InspectClientHello;
using Result = filters::TlsInspection::Result;

// openssl s_client -servername v1.web.example.com -alpn h2,http/1.1 (TLS 1.3, one record)
constexpr const char* kSniAlpnHello =
    "16030101510100014d0303f9fd5247bfda53966ab4e2790527b005e7bf268ed4e263554796308519f130cb20c65f387a"
    "9b6c4c9bb859e6454c8ab8aa07baeb6e6be35fadf9ea9d266997c986003e130213031301c02cc030009fcca9cca8ccaa"
    "c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff010000c6"
    "00000017001500001276312e7765622e6578616d706c652e636f6d000b000403000102000a00160014001d0017001e00"
    "19001801000101010201030104002300000010000e000c02683208687474702f312e310016000000170000000d002a00"
    "28040305030603080708080809080a080b080408050806040105010601030303010302040205020602002b0009080304"
    "030303020301002d00020101003300260024001d002020fa3fb872c9f7a0e9a46aad2c016e24b0bedd794098708d42a0"
    "d5521821db3b";

// openssl s_client -noservername -tls1_2
constexpr const char* kNoSniHello =
    "16030100b7010000b3030398d6244efcda9d07a9d8cb3c17b6c1f5a2e988e1081294bf21b0d8c45ddb03c7000038c02c"
    "c030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c"
    "0035002f00ff01000052000b000403000102000a000c000a001d0017001e00190018002300000016000000170000000d"
    "002a0028040305030603080708080809080a080b080408050806040105010601030303010302040205020602";

std::vector<uint8_t> Bytes(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

filters::TlsInspection Inspect(const std::vector<uint8_t>& bytes, size_t size) {
  return InspectClientHello(std::span<const uint8_t>(bytes.data(), size));
}

TEST_CASE("tls_inspector: SNI and ALPN of a real ClientHello, only once it is whole") {
  const std::vector<uint8_t> hello = Bytes(kSniAlpnHello);
  filters::TlsInspection whole = Inspect(hello, hello.size());
  REQUIRE(whole.result == Result::kClientHello);
  CHECK(whole.server_name == "v1.web.example.com");
  CHECK(whole.alpn == std::vector<std::string>{"h2", "http/1.1"});
  // Every shorter prefix asks for more bytes, none is mistaken for something else.
  for (size_t size = 0; size < hello.size(); ++size) {
    INFO("prefix of " << size << " bytes");
    CHECK(Inspect(hello, size).result == Result::kNeedMoreData);
  }
  // Bytes after the ClientHello (none should come, but) change nothing.
  std::vector<uint8_t> more = hello;
  more.insert(more.end(), {0x17, 0x03, 0x03, 0x00, 0x01, 0x00});
  CHECK(Inspect(more, more.size()).server_name == "v1.web.example.com");
}

TEST_CASE("tls_inspector: a ClientHello without SNI or ALPN is still TLS") {
  const std::vector<uint8_t> hello = Bytes(kNoSniHello);
  filters::TlsInspection inspection = Inspect(hello, hello.size());
  REQUIRE(inspection.result == Result::kClientHello);
  CHECK(inspection.server_name.empty());
  CHECK(inspection.alpn.empty());
}

TEST_CASE("tls_inspector: a ClientHello split over two records is reassembled") {
  const std::vector<uint8_t> hello = Bytes(kSniAlpnHello);
  // Re-frame the handshake message as two handshake records of 100 bytes and the rest.
  const std::vector<uint8_t> message(hello.begin() + 5, hello.end());
  std::vector<uint8_t> split;
  auto record = [&](size_t from, size_t to) {
    const size_t length = to - from;
    split.insert(split.end(), {0x16, 0x03, 0x01, static_cast<uint8_t>(length >> 8),
                               static_cast<uint8_t>(length & 0xff)});
    split.insert(split.end(), message.begin() + from, message.begin() + to);
  };
  record(0, 100);
  record(100, message.size());
  CHECK(Inspect(split, 105).result == Result::kNeedMoreData);
  CHECK(Inspect(split, 107).result == Result::kNeedMoreData);
  filters::TlsInspection inspection = Inspect(split, split.size());
  REQUIRE(inspection.result == Result::kClientHello);
  CHECK(inspection.server_name == "v1.web.example.com");
}

TEST_CASE("tls_inspector: plaintext, other records and broken ClientHellos are not TLS") {
  auto text = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  const std::vector<uint8_t> http = text("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(Inspect(http, http.size()).result == Result::kNotTls);
  CHECK(Inspect(http, 1).result == Result::kNotTls);  // decided on the first byte
  const std::vector<uint8_t> h2 = text("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  CHECK(Inspect(h2, h2.size()).result == Result::kNotTls);
  // An alert record, and a handshake record that holds a ServerHello.
  CHECK(Inspect({0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28}, 7).result == Result::kNotTls);
  CHECK(Inspect({0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00}, 9).result ==
        Result::kNotTls);
  // Every length field of the real ClientHello pointing past its end, one at a time.
  const std::vector<uint8_t> hello = Bytes(kSniAlpnHello);
  for (size_t i = 9; i < hello.size(); ++i) {
    std::vector<uint8_t> broken = hello;
    broken[i] = 0xff;
    filters::TlsInspection inspection = Inspect(broken, broken.size());
    INFO("byte " << i);
    // Any answer will do but a crash or a read past the end (ASan); the SNI, if still read,
    // comes from the bytes that were there.
    CHECK((inspection.result == Result::kNotTls || inspection.result == Result::kClientHello));
  }
}

TEST_CASE("tls_inspector: a ClientHello larger than 16 KiB is too large") {
  // A handshake header announcing 20000 bytes.
  CHECK(Inspect({0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x4e, 0x20}, 9).result ==
        Result::kTooLarge);
}

std::shared_ptr<const config::ListenerConfig> Listener(const std::string& json) {
  auto listener = config::ParseListener(
      testing::FromJson<envoy::config::listener::v3::Listener>(json));
  REQUIRE(listener.ok());
  return *listener;
}

std::string Chain(const std::string& name, const std::string& match) {
  return R"({"name": ")" + name + R"(", "filter_chain_match": )" + match +
         R"(, "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
           "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
           "stat_prefix": "s", "cluster": ")" + name + R"("}}]})";
}

std::string Pick(const config::ListenerConfig& listener, const std::string& destination,
                 uint16_t port, std::string_view sni, std::string_view transport = "tls",
                 const std::vector<std::string>& alpn = {}) {
  config::ConnectionMatchInput input{
      .destination = boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address(destination), port),
      .source = boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("10.0.0.5"), 40000),
      .server_name = sni,
      .transport_protocol = transport,
      .application_protocols = &alpn};
  const config::FilterChain* chain = listener.ChainFor(input);
  return chain == nullptr ? "none" : chain->name;
}

TEST_CASE("filter chains: server names exact, then the longest wildcard, then none") {
  auto listener = Listener(R"({"name": "l", "address": {"socket_address": {"address": "0.0.0.0",
      "port_value": 443}}, "bind_to_port": false,
      "listener_filters": [{"name": "envoy.filters.listener.tls_inspector"}],
      "filter_chains": [)" +
      Chain("wild", R"({"server_names": ["*.example.com"]})") + "," +
      Chain("deeper", R"({"server_names": ["*.web.example.com"]})") + "," +
      Chain("exact", R"({"server_names": ["V1.web.example.com", "other.org"]})") + "," +
      Chain("any", "{}") + "]}");
  CHECK(listener->tls_inspector.RunsFor(443));
  CHECK_FALSE(listener->http_inspector.enabled);
  CHECK(Pick(*listener, "10.0.0.1", 443, "v1.web.example.com") == "exact");
  CHECK(Pick(*listener, "10.0.0.1", 443, "other.org") == "exact");
  CHECK(Pick(*listener, "10.0.0.1", 443, "v2.web.example.com") == "deeper");
  CHECK(Pick(*listener, "10.0.0.1", 443, "a.b.web.example.com") == "deeper");
  CHECK(Pick(*listener, "10.0.0.1", 443, "api.example.com") == "wild");
  CHECK(Pick(*listener, "10.0.0.1", 443, "example.com") == "any");  // *. needs a label
  CHECK(Pick(*listener, "10.0.0.1", 443, "") == "any");
  CHECK(Pick(*listener, "10.0.0.1", 443, "", "raw_buffer") == "any");
}

TEST_CASE("filter chains: port, then destination IP, then SNI, without backtracking") {
  auto listener = Listener(R"({"name": "l", "address": {"socket_address": {"address": "0.0.0.0",
      "port_value": 443}}, "bind_to_port": false, "filter_chains": [)" +
      Chain("port-sni", R"({"destination_port": 443, "server_names": ["a.com"]})") + "," +
      Chain("subnet", R"({"prefix_ranges": [{"address_prefix": "10.96.0.0", "prefix_len": 16}],
                          "server_names": ["b.com"]})") + "," +
      Chain("narrow", R"({"prefix_ranges": [{"address_prefix": "10.96.1.0", "prefix_len": 24}]})") +
      "," + Chain("tls-h2", R"({"destination_port": 8443, "transport_protocol": "tls",
                                "application_protocols": ["h2"]})") + "," +
      Chain("tls", R"({"destination_port": 8443, "transport_protocol": "tls"})") + "," +
      Chain("plain", R"({"destination_port": 8443, "transport_protocol": "raw_buffer"})") + "]}");
  CHECK(Pick(*listener, "10.96.0.5", 443, "a.com") == "port-sni");
  // The port chain is the most specific for port 443: another SNI matches nothing there.
  CHECK(Pick(*listener, "10.96.0.5", 443, "b.com") == "none");
  CHECK(Pick(*listener, "10.96.0.5", 444, "b.com") == "subnet");
  // The /24 beats the /16 for its addresses, even though only the /16 chain names b.com.
  CHECK(Pick(*listener, "10.96.1.5", 444, "b.com") == "narrow");
  CHECK(Pick(*listener, "10.97.0.5", 444, "b.com") == "none");
  CHECK(Pick(*listener, "10.97.0.5", 8443, "x", "tls", {"http/1.1", "h2"}) == "tls-h2");
  CHECK(Pick(*listener, "10.97.0.5", 8443, "x", "tls", {"http/1.1"}) == "tls");
  CHECK(Pick(*listener, "10.97.0.5", 8443, "", "raw_buffer") == "plain");
}

TEST_CASE("filter chains: bad server names and prefixes are NACKed with their field") {
  using ListenerProto = envoy::config::listener::v3::Listener;
  auto proto = testing::FromJson<ListenerProto>(R"({"name": "l", "address": {"socket_address": {"address": "0.0.0.0",
      "port_value": 443}}, "bind_to_port": false, "filter_chains": [)" +
      Chain("a", R"({"server_names": ["a.*.com"]})") + "]}");
  CHECK(config::ParseListener(proto).status().message() ==
        "filter_chains[0].filter_chain_match.server_names[0]: \"a.*.com\" is not a server name "
        "(wildcards only as a \"*.\" prefix)");
  proto = testing::FromJson<ListenerProto>(R"({"name": "l", "address": {"socket_address": {"address": "0.0.0.0",
      "port_value": 443}}, "bind_to_port": false, "filter_chains": [)" +
      Chain("a", R"({"prefix_ranges": [{"address_prefix": "10.0.0.0", "prefix_len": 40}]})") +
      "]}");
  CHECK(config::ParseListener(proto).status().message() ==
        "filter_chains[0].filter_chain_match.prefix_ranges[0].prefix_len: 40 is longer than the "
        "address (32 bits)");
}

}  // namespace
}  // namespace meshpilot::sidecar
