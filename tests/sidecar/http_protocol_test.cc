// The protocol-neutral pieces of HTTP/2 and gRPC support: gRPC status of local replies,
// header conversion between HTTP/1.1 and the HeaderMap both codecs share, and the upstream
// protocol a Cluster asks for (including exactly what meshpilot's translator emits).

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <catch2/catch.hpp>

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"

#include "sidecar/config/cluster.h"
#include "sidecar/config/duration.h"
#include "sidecar/config/listener.h"
#include "sidecar/http/grpc.h"
#include "sidecar/http/header_map.h"
#include "sidecar/http/http1_headers.h"
#include "sidecar/http/http1_parser.h"
#include "tests/sidecar/proto_json.h"

namespace meshpilot::sidecar {
namespace {

namespace bhttp = boost::beast::http;
using testing::FromJson;

TEST_CASE("grpc: local reply status as Envoy maps HTTP status") {
  using http::GrpcStatus;
  using http::GrpcStatusForHttp;
  CHECK(GrpcStatusForHttp(503) == GrpcStatus::kUnavailable);
  CHECK(GrpcStatusForHttp(502) == GrpcStatus::kUnavailable);
  CHECK(GrpcStatusForHttp(429) == GrpcStatus::kUnavailable);
  CHECK(GrpcStatusForHttp(404) == GrpcStatus::kUnimplemented);
  CHECK(GrpcStatusForHttp(504) == GrpcStatus::kUnavailable);
  CHECK(GrpcStatusForHttp(403) == GrpcStatus::kPermissionDenied);
  CHECK(GrpcStatusForHttp(401) == GrpcStatus::kUnauthenticated);
  CHECK(GrpcStatusForHttp(400) == GrpcStatus::kInternal);
  CHECK(GrpcStatusForHttp(418) == GrpcStatus::kUnknown);
  CHECK(GrpcStatusForHttp(500) == GrpcStatus::kUnknown);
}

TEST_CASE("grpc: a local reply is a trailers-only 200 with grpc-status and grpc-message") {
  http::HeaderMap reply = http::GrpcLocalReplyHeaders(503, "no healthy upstream");
  CHECK(reply.Status() == 200);
  CHECK(reply.GetOr("content-type", "") == "application/grpc");
  CHECK(reply.GetOr("grpc-status", "") == "14");
  CHECK(reply.GetOr("grpc-message", "") == "no healthy upstream");
  CHECK(reply.entries().front().first == ":status");
  // An explicit status (the fault filter's grpc abort) wins over the mapping.
  CHECK(http::GrpcLocalReplyHeaders(200, "", 8).GetOr("grpc-status", "") == "8");
  CHECK_FALSE(http::GrpcLocalReplyHeaders(404, "").Has("grpc-message"));
  CHECK(http::PercentEncodeGrpcMessage("50% done\n") == "50%25 done%0A");
}

TEST_CASE("grpc: requests are told by content-type, status read from headers or trailers") {
  CHECK(http::IsGrpc(http::HeaderMap{{"content-type", "application/grpc"}}));
  CHECK(http::IsGrpc(http::HeaderMap{{"content-type", "application/grpc+proto"}}));
  CHECK(http::IsGrpc(http::HeaderMap{{"Content-Type", "application/grpc;charset=utf-8"}}));
  CHECK_FALSE(http::IsGrpc(http::HeaderMap{{"content-type", "application/grpc-web"}}));
  CHECK_FALSE(http::IsGrpc(http::HeaderMap{{"content-type", "application/json"}}));
  CHECK_FALSE(http::IsGrpc(http::HeaderMap{}));
  CHECK(http::GrpcStatusOf(http::HeaderMap{{"grpc-status", "14"}}) == 14u);
  CHECK_FALSE(http::GrpcStatusOf(http::HeaderMap{{"grpc-status", "x"}}).has_value());
  CHECK_FALSE(http::GrpcStatusOf(http::HeaderMap{}).has_value());
}

TEST_CASE("grpc: messages framed with a length prefix and cut back out, across reads") {
  using meshpilot::sidecar::http::GrpcFrame;
  using meshpilot::sidecar::http::GrpcMessageReader;
  REQUIRE(GrpcFrame("abc") == std::string("\0\0\0\0\3abc", 8));
  const std::string wire = GrpcFrame("first") + GrpcFrame("") + GrpcFrame(std::string(300, 'x'));
  GrpcMessageReader reader(1024);
  std::vector<std::string> messages;
  for (char c : wire) {  // a byte at a time: every split of prefix and message
    reader.buffer().push_back(c);
    for (;;) {
      auto message = reader.Next();
      REQUIRE(message.ok());
      if (!*message) break;
      messages.emplace_back(**message);
    }
  }
  REQUIRE(messages == std::vector<std::string>{"first", "", std::string(300, 'x')});
}

TEST_CASE("grpc: a message over the limit or compressed is refused from its prefix") {
  using meshpilot::sidecar::http::GrpcMessageReader;
  GrpcMessageReader reader(1000);
  reader.buffer() = std::string("\0\0\0\x03\xe9", 5);  // 1001 bytes announced, none sent
  auto too_large = reader.Next();
  REQUIRE(too_large.status().code() == absl::StatusCode::kResourceExhausted);
  REQUIRE(std::string(too_large.status().message()) ==
          "gRPC message of 1001 bytes, larger than the limit of 1000");
  GrpcMessageReader compressed(1000);
  compressed.buffer() = std::string("\1\0\0\0\1z", 6);
  REQUIRE(compressed.Next().status().code() == absl::StatusCode::kInternal);
}

TEST_CASE("grpc: grpc-message percent-decoding leaves malformed escapes as they are") {
  using meshpilot::sidecar::http::PercentDecodeGrpcMessage;
  using meshpilot::sidecar::http::PercentEncodeGrpcMessage;
  REQUIRE(PercentDecodeGrpcMessage("100%25 sure%0A") == "100% sure\n");
  REQUIRE(PercentDecodeGrpcMessage("50% %zz %4") == "50% %zz %4");
  REQUIRE(PercentDecodeGrpcMessage(PercentEncodeGrpcMessage("é%\x01")) == "é%\x01");
}

TEST_CASE("header map: lower-case names, pseudo-headers first, set replaces every value") {
  http::HeaderMap headers{{"X-A", "1"}, {":path", "/p"}, {"x-a", "2"}, {":method", "GET"}};
  REQUIRE(headers.entries().size() == 4);
  CHECK(headers.entries()[0].first == ":path");
  CHECK(headers.entries()[1].first == ":method");
  CHECK(headers.entries()[2] == http::HeaderMap::Entry{"x-a", "1"});
  headers.Set("X-A", "3");
  CHECK(headers.entries().size() == 3);
  CHECK(headers.GetOr("x-a", "") == "3");
  headers.Remove("x-a");
  CHECK_FALSE(headers.Has("x-a"));
  // Names are lower-cased eight bytes at a time: every byte value, and a tail.
  std::string every_byte;
  for (int c = 0; c < 256; ++c) every_byte.push_back(static_cast<char>(c));
  every_byte += "XyZ";
  std::string expected = every_byte;
  for (char& c : expected) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  headers.Add(every_byte, "v");
  CHECK(headers.entries().back().first == expected);
  CHECK(http::HeaderMap{{":status", "204"}}.Status() == 204);
  CHECK(http::HeaderMap{{":status", "abc"}}.Status() == 0);
}

TEST_CASE("header map: AddStatic keeps a view of the name; the rest of the map treats it as any") {
  static constexpr std::string_view kName = "x-request-id";
  http::HeaderMap headers{{"x-a", "1"}};
  headers.AddStatic(kName, "id");
  headers.AddStatic(":authority", "host");
  REQUIRE(headers.entries().size() == 3);
  CHECK(headers.entries()[0].first == ":authority");  // pseudo-headers first, as with Add
  CHECK(headers.entries()[2].first.data() == kName.data());
  CHECK(headers.GetOr("X-Request-Id", "") == "");  // Get takes lower case, as with Add
  CHECK(headers.GetOr(kName, "") == "id");
  headers.Set("x-request-id", "other");
  CHECK(headers.GetOr(kName, "") == "other");
  // A copy owns its names too; a move keeps the view.
  http::HeaderMap copy = headers;
  CHECK(copy.entries()[2].first == kName);
  CHECK(copy.entries()[2].first.data() != kName.data());
  http::HeaderMap moved = std::move(headers);
  CHECK(moved.entries()[2].first.data() == kName.data());
  moved.Remove("x-request-id");
  CHECK_FALSE(moved.Has(kName));
}

TEST_CASE("header map: views stay valid as the arena grows; copies and moves own their bytes") {
  http::HeaderMap headers;
  headers.Add("X-Long", std::string(300, 'v'));
  const std::string_view first = *headers.Get("x-long");
  const std::string_view name = headers.entries().front().first;
  // Far more than the first block: new blocks, the old ones stay.
  for (int i = 0; i < 200; ++i) headers.Add("x-" + std::to_string(i), std::string(100, 'a' + i % 26));
  // A value larger than a block gets its own; what follows still fits where it did.
  headers.Add("cookie", std::string(60000, 'c'));
  headers.Add("x-after-cookie", "1");
  CHECK(headers.GetOr("cookie", "") == std::string(60000, 'c'));
  CHECK(headers.GetOr("x-after-cookie", "") == "1");
  // An empty value is empty, never a null pointer (values go to memcpy and nghttp2).
  headers.Add("x-empty", "");
  CHECK(headers.Get("x-empty")->data() != nullptr);
  headers.Set("x-long", "short");
  CHECK(first == std::string(300, 'v'));  // Set kept the old bytes
  CHECK(name == "x-long");
  CHECK(headers.GetOr("x-long", "") == "short");
  CHECK(headers.GetOr("x-199", "") == std::string(100, 'a' + 199 % 26));

  http::HeaderMap copy = headers;
  headers.Set("x-0", "changed");
  CHECK(copy.GetOr("x-0", "") == std::string(100, 'a'));
  CHECK(copy.entries().size() == headers.entries().size());
  // A copy's views point into its own arena.
  CHECK(copy.Get("x-long")->data() != headers.Get("x-long")->data());

  const std::string_view before_move = *copy.Get("x-5");
  http::HeaderMap moved = std::move(copy);
  CHECK(moved.Get("x-5")->data() == before_move.data());
  CHECK(copy.empty());  // NOLINT(bugprone-use-after-move): a moved-from map is empty
  copy.Add("x-after", "move");
  CHECK(copy.GetOr("x-after", "") == "move");
  moved = http::HeaderMap{{"x-b", "2"}};
  CHECK(moved.entries().size() == 1);
}

TEST_CASE("header map: the entries grow in the arena, aligned, pseudo-headers still first") {
  http::HeaderMap headers;
  headers.Reserve(2);
  headers.Add("x-a", "odd");  // 3 + 3 bytes: the arena's cursor is no longer aligned
  headers.Add("x-b", "1");
  for (int i = 0; i < 40; ++i) {
    headers.Add("x-" + std::to_string(i), "v");  // the entries move, twice from a misaligned cursor
    REQUIRE(reinterpret_cast<uintptr_t>(headers.entries().data()) %
                alignof(http::HeaderMap::Entry) == 0);
  }
  headers.Add(":path", "/p");
  headers.Add(":method", "GET");
  REQUIRE(headers.entries().size() == 44);
  CHECK(headers.entries()[0].first == ":path");
  CHECK(headers.entries()[1].first == ":method");
  CHECK(headers.entries()[2] == http::HeaderMap::Entry{"x-a", "odd"});
  CHECK(headers.entries().back() == http::HeaderMap::Entry{"x-39", "v"});
  headers.Set("x-b", "2");
  headers.Remove("x-a");
  CHECK(headers.entries().size() == 43);
  CHECK(headers.GetOr("x-b", "") == "2");
  // A copy reserves its entries and bytes at once, and keeps their order.
  const http::HeaderMap copy = headers;
  CHECK(std::ranges::equal(copy.entries(), headers.entries()));
  const http::HeaderMap empty_copy = http::HeaderMap();
  CHECK(empty_copy.empty());
}

TEST_CASE("header map: random Add, Set and Remove agree with a plain list (fixed seed)") {
  // The list as HeaderMap documents it: lower-case names, pseudo-headers first in the order
  // they came, Set replaces the first value and drops the others.
  using List = std::vector<std::pair<std::string, std::string>>;
  auto is_pseudo = [](const auto& entry) { return entry.first.front() == ':'; };
  auto insert = [&](List& list, const std::string& name, const std::string& value) {
    auto at = name.front() == ':' ? std::find_if_not(list.begin(), list.end(), is_pseudo)
                                  : list.end();
    list.insert(at, {name, value});
  };
  const std::array<std::string, 7> names{":path", ":authority", "x-a", "X-B", "te", "cookie",
                                         "x-a-longer-name"};
  std::mt19937 rng(7);
  for (int round = 0; round < 300; ++round) {
    http::HeaderMap headers;
    if (rng() % 2 == 0) headers.Reserve(rng() % 20, rng() % 600);
    List list;
    std::vector<std::pair<std::string_view, std::string>> seen;  // views Get gave, and their bytes
    for (int step = rng() % 60; step > 0; --step) {
      const std::string& name = names[rng() % names.size()];
      std::string lower = name;
      absl::AsciiStrToLower(&lower);
      const std::string value(rng() % 8 == 0 ? rng() % 3000 : rng() % 40, 'a' + rng() % 26);
      auto same = [&](const auto& entry) { return entry.first == lower; };
      switch (rng() % 5) {
        case 0:
        case 1:
          headers.Add(name, value);
          insert(list, lower, value);
          break;
        case 2:
          headers.Set(name, value);
          if (auto it = std::find_if(list.begin(), list.end(), same); it == list.end()) {
            insert(list, lower, value);
          } else {
            it->second = value;
            list.erase(std::remove_if(it + 1, list.end(), same), list.end());
          }
          break;
        case 3:
          headers.Remove(name);
          list.erase(std::remove_if(list.begin(), list.end(), same), list.end());
          break;
        default:
          if (auto got = headers.Get(lower)) seen.emplace_back(*got, std::string(*got));
      }
      REQUIRE(headers.entries().size() == list.size());
      for (size_t i = 0; i < list.size(); ++i) {
        REQUIRE(headers.entries()[i].first == list[i].first);
        REQUIRE(headers.entries()[i].second == list[i].second);
      }
    }
    for (const auto& [view, bytes] : seen) CHECK(view == bytes);
    const http::HeaderMap copy = headers;
    CHECK(std::ranges::equal(copy.entries(), headers.entries()));
  }
}

TEST_CASE("http1 headers: request line and Host become pseudo-headers and back") {
  http::Http1Parser<true> request;
  const std::string_view sent =
      "POST /echo.v1.Echo/Echo?x=1 HTTP/1.1\r\nHost: echo.default:8080\r\nX-Trace: abc\r\n"
      "Host: second\r\nCONTENT-type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
  boost::system::error_code parse_error;
  const size_t used = request.put(boost::asio::buffer(sent.data(), sent.size()), parse_error);
  REQUIRE_FALSE(parse_error);
  REQUIRE(request.is_header_done());
  CHECK(request.method() == bhttp::verb::post);
  CHECK(request.version() == 11);
  CHECK(request.keep_alive());
  http::HeaderMap headers = request.headers();
  CHECK(headers.GetOr(":method", "") == "POST");
  CHECK(headers.GetOr(":path", "") == "/echo.v1.Echo/Echo?x=1");
  CHECK(headers.GetOr(":authority", "") == "echo.default:8080");
  CHECK(headers.GetOr(":scheme", "") == "http");
  CHECK_FALSE(headers.Has("host"));
  CHECK(headers.GetOr("x-trace", "") == "abc");
  CHECK(headers.GetOr("content-length", "") == "5");
  // Names Beast knows (Content-Type) and names it does not (X-Trace) come out in lower case.
  CHECK(headers.GetOr("content-type", "") == "text/plain");
  // The body lands in the string given, and the message is done.
  std::string body;
  request.BodyInto(body);
  request.put(boost::asio::buffer(sent.substr(used)), parse_error);
  REQUIRE_FALSE(parse_error);
  CHECK(body == "hello");
  CHECK(request.is_done());

  // Written as the wire bytes, the head parses back (Beast's parser) to the same request.
  std::string wire;
  http::AppendHttp1RequestHead(headers, wire);
  http::EndHttp1Head(wire);
  CHECK(wire.starts_with("POST /echo.v1.Echo/Echo?x=1 HTTP/1.1\r\nHost: echo.default:8080\r\n"));
  bhttp::request_parser<bhttp::empty_body> parser;
  boost::system::error_code ec;
  parser.put(boost::asio::buffer(wire), ec);
  REQUIRE_FALSE(ec);
  REQUIRE(parser.is_header_done());
  const auto& back = parser.get();
  CHECK(back.method() == bhttp::verb::post);
  CHECK(back.target() == "/echo.v1.Echo/Echo?x=1");
  CHECK(back[bhttp::field::host] == "echo.default:8080");
  CHECK(back["x-trace"] == "abc");
  CHECK(back.version() == 11);
  for (const auto& field : back) CHECK(field.name_string().front() != ':');
}

TEST_CASE("http1 headers: status line becomes :status and back") {
  http::Http1Parser<false> response(/*keep_trailers=*/true);
  const std::string_view received =
      "HTTP/1.1 503 Service Unavailable\r\ngrpc-status: 14\r\nTransfer-Encoding: chunked\r\n\r\n";
  boost::system::error_code parse_error;
  response.put(boost::asio::buffer(received.data(), received.size()), parse_error);
  REQUIRE_FALSE(parse_error);
  CHECK(response.status() == 503);
  http::HeaderMap headers = response.headers();
  CHECK(headers.Status() == 503);
  CHECK(headers.GetOr("grpc-status", "") == "14");
  // Chunks arrive in pieces of at most kBodyPiece; the trailers are kept apart.
  std::string body;
  const std::string chunked = "4000\r\n" + std::string(0x4000, 'a') + "\r\n5\r\nbbbbb\r\n0\r\nx-t: 1\r\n\r\n";
  std::string_view rest = chunked;
  while (!response.is_done()) {
    response.BodyInto(body);
    rest.remove_prefix(response.put(boost::asio::buffer(rest.data(), rest.size()), parse_error));
    if (parse_error == bhttp::error::need_buffer) parse_error = {};
    REQUIRE_FALSE(parse_error);
  }
  CHECK(body == std::string(0x4000, 'a') + "bbbbb");
  CHECK_FALSE(response.headers().Has("x-t"));
  CHECK(std::ranges::equal(response.trailers().entries(), http::HeaderMap{{"x-t", "1"}}.entries()));
  std::string wire;
  http::AppendHttp1ResponseHead(http::HeaderMap{{":status", "200"}, {"content-type", "text/plain"}},
                                10, wire);
  http::AppendHttp1Field("Content-Length", "0", wire);
  http::EndHttp1Head(wire);
  CHECK(wire == "HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 0\r\n\r\n");
  wire.clear();
  http::AppendHttp1ResponseHead(http::HeaderMap{{":status", "599"}}, 11, wire);
  http::EndHttp1Head(wire);
  bhttp::response_parser<bhttp::empty_body> parser;
  boost::system::error_code ec;
  parser.put(boost::asio::buffer(wire), ec);
  REQUIRE_FALSE(ec);
  CHECK(parser.get().result_int() == 599);
  CHECK(parser.get().version() == 11);
}

// A body piece as FrameHttp1Body puts it on the wire.
std::string Framed(std::string_view data, bool chunked, bool end) {
  std::string out = "<";
  const std::string_view suffix = http::FrameHttp1Body(data.size(), chunked, end, out);
  return out.append(data).append(suffix);
}

TEST_CASE("http1 framing: bodies as they are, or chunked with the last chunk") {
  CHECK(Framed("abc", false, true) == "<abc");
  CHECK(Framed(std::string(26, 'x'), true, false) == "<1a\r\n" + std::string(26, 'x') + "\r\n");
  CHECK(Framed(std::string(4096, 'x'), true, false) == "<1000\r\n" + std::string(4096, 'x') + "\r\n");
  CHECK(Framed("ab", true, true) == "<2\r\nab\r\n0\r\n\r\n");
  CHECK(Framed("", true, true) == "<0\r\n\r\n");
  CHECK(Framed("", true, false) == "<");
}

TEST_CASE("http1 trailers: written in the last chunk, pseudo-headers left out") {
  std::string out = "<";
  http::AppendHttp1LastChunk(http::HeaderMap{{"x-checksum", "abc"}, {"x-other", "1"}}, out);
  CHECK(out == "<0\r\nx-checksum: abc\r\nx-other: 1\r\n\r\n");
  out.clear();
  http::AppendHttp1LastChunk(http::HeaderMap{{":status", "200"}}, out);
  CHECK(out == "0\r\n\r\n");
}

TEST_CASE("http1 trailers: the parser keeps a chunked body's trailers only when asked") {
  const std::string_view sent =
      "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\nx-checksum: 900150983cd24fb0\r\nx-other: 1\r\n\r\n";
  auto parse = [&](bool keep_trailers) {
    http::Http1Parser<true> request(keep_trailers);
    std::string body;
    boost::system::error_code ec;
    size_t used = request.put(boost::asio::buffer(sent.data(), sent.size()), ec);
    REQUIRE_FALSE(ec);
    while (!request.is_done()) {
      request.BodyInto(body);
      used += request.put(boost::asio::buffer(sent.substr(used)), ec);
      REQUIRE_FALSE(ec);
    }
    CHECK(body == "abc");
    return request.trailers();
  };
  const http::HeaderMap kept = parse(true);
  CHECK(kept.GetOr("x-checksum", "") == "900150983cd24fb0");
  CHECK(kept.GetOr("x-other", "") == "1");
  // Without enable_trailers they are parsed past and dropped: nothing is collected.
  CHECK(parse(false).empty());
}

config::ClusterConfig ClusterFrom(const std::string& json) {
  auto cluster = config::ParseCluster(FromJson<envoy::config::cluster::v3::Cluster>(json));
  INFO(cluster.status().ToString());
  REQUIRE(cluster.ok());
  return **cluster;
}

constexpr char kOptions[] =
    R"("typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
         "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", )";

TEST_CASE("http1 trailers: a cluster reads them with enable_trailers") {
  auto on = [](const std::string& options) {
    return ClusterFrom(R"({"name": "c", "type": "STATIC", "connect_timeout": "1s", )" + options + "}")
        .http1.enable_trailers;
  };
  CHECK_FALSE(on(R"("lb_policy": "ROUND_ROBIN")"));
  CHECK(on(std::string(kOptions) + R"("explicit_http_config": {"http_protocol_options": {"enable_trailers": true}}}})"));
  CHECK(on(std::string(kOptions) + R"("use_downstream_protocol_config": {"http_protocol_options": {"enable_trailers": true}}}})"));
  CHECK(on(R"("http_protocol_options": {"enable_trailers": true})"));
}

TEST_CASE("cluster protocol: HttpProtocolOptions and the deprecated fields") {
  using config::UpstreamProtocol;
  const std::string base = R"({"name": "c", "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}}}, )";
  CHECK(ClusterFrom(base + R"("lb_policy": "ROUND_ROBIN"})").protocol == UpstreamProtocol::kHttp1);
  auto h2 = ClusterFrom(base + kOptions +
                        R"("explicit_http_config": {"http2_protocol_options": {"max_concurrent_streams": 7}}}}})");
  CHECK(h2.protocol == UpstreamProtocol::kHttp2);
  CHECK(h2.http2.max_concurrent_streams == 7);
  CHECK(ClusterFrom(base + kOptions + R"("explicit_http_config": {"http_protocol_options": {}}}}})")
            .protocol == UpstreamProtocol::kHttp1);
  CHECK(ClusterFrom(base + kOptions +
                    R"("use_downstream_protocol_config": {"http_protocol_options": {}, "http2_protocol_options": {}}}}})")
            .protocol == UpstreamProtocol::kDownstream);
  // Only common options: nothing said about the protocol.
  CHECK(ClusterFrom(base + kOptions + R"("common_http_protocol_options": {"idle_timeout": "30s"}}}})")
            .protocol == UpstreamProtocol::kHttp1);
  CHECK(ClusterFrom(base + R"("http2_protocol_options": {}})").protocol == UpstreamProtocol::kHttp2);
  CHECK(ClusterFrom(base + R"("protocol_selection": "USE_DOWNSTREAM_PROTOCOL"})").protocol ==
        UpstreamProtocol::kDownstream);

  // auto_config: ALPN decides per connection (plaintext: HTTP/1.1); HTTP/3 is rejected.
  CHECK(ClusterFrom(base + kOptions + R"("auto_config": {}}}})").protocol ==
        UpstreamProtocol::kAlpn);
  auto rejected = config::ParseCluster(FromJson<envoy::config::cluster::v3::Cluster>(
      base + kOptions + R"("auto_config": {"http3_protocol_options": {}}}}})"));
  REQUIRE_FALSE(rejected.ok());
  CHECK(rejected.status().message() ==
        "typed_extension_protocol_options[envoy.extensions.upstreams.http.v3.HttpProtocolOptions]"
        ".auto_config.http3_protocol_options: HTTP/3 is not supported");
}

TEST_CASE("cluster: max_requests_per_connection and tcp_keepalive") {
  const std::string base = R"({"name": "c", "type": "STATIC", "connect_timeout": "1s", )";
  CHECK(ClusterFrom(base + R"("lb_policy": "ROUND_ROBIN"})").max_requests_per_connection == 0);
  CHECK(ClusterFrom(base + kOptions + R"("common_http_protocol_options": {"max_requests_per_connection": 3}}}})")
            .max_requests_per_connection == 3);
  // The deprecated fields, the newer first.
  CHECK(ClusterFrom(base + R"("common_http_protocol_options": {"max_requests_per_connection": 4},
                              "max_requests_per_connection": 5})")
            .max_requests_per_connection == 4);
  CHECK(ClusterFrom(base + R"("max_requests_per_connection": 5})").max_requests_per_connection == 5);

  CHECK_FALSE(ClusterFrom(base + R"("lb_policy": "ROUND_ROBIN"})").tcp_keepalive.has_value());
  auto partial = ClusterFrom(base + R"("upstream_connection_options": {"tcp_keepalive": {"keepalive_time": 60}}})");
  REQUIRE(partial.tcp_keepalive.has_value());
  CHECK(partial.tcp_keepalive->time == 60u);
  CHECK_FALSE(partial.tcp_keepalive->probes.has_value());  // the kernel's default
  CHECK_FALSE(partial.tcp_keepalive->interval.has_value());
  CHECK(ClusterFrom(base + R"("upstream_connection_options": {"tcp_keepalive": {}}})").tcp_keepalive.has_value());
}

TEST_CASE("cluster protocol: what meshpilot emits for gRPC/HTTP2 and HTTP ports") {
  namespace fs = std::filesystem;
  std::ifstream in(fs::path(MESHPILOT_SOURCE_DIR) / "tests/golden/dr_traffic_policy/expected/sidecar/cds.json");
  std::stringstream text;
  text << in.rdbuf();
  std::map<std::string, std::shared_ptr<const config::ClusterConfig>> clusters;
  for (const auto& resource : nlohmann::json::parse(text.str())) {
    google::protobuf::Any any;  // the golden files hold resources as Any (with "@type")
    REQUIRE(google::protobuf::util::JsonStringToMessage(resource.dump(), &any).ok());
    envoy::config::cluster::v3::Cluster proto;
    REQUIRE(any.UnpackTo(&proto));
    auto cluster = config::ParseCluster(proto);
    REQUIRE(cluster.ok());
    clusters[proto.name()] = *cluster;
  }
  // ratings: a grpc port (7070) and an http port its DestinationRule upgrades to HTTP/2 (8080);
  // reviews: an http port with connection-pool options.
  CHECK(clusters.at("outbound|7070||ratings.default.svc.cluster.local")->protocol == config::UpstreamProtocol::kHttp2);
  CHECK(clusters.at("outbound|8080||ratings.default.svc.cluster.local")->protocol == config::UpstreamProtocol::kHttp2);
  const config::ClusterConfig& reviews = *clusters.at("outbound|9080|v1|reviews.default.svc.cluster.local");
  CHECK(reviews.protocol == config::UpstreamProtocol::kHttp1);
  // maxRequestsPerConnection: 1, tcpKeepalive: {probes: 3, time: 7200s, interval: 75s}
  CHECK(reviews.max_requests_per_connection == 1);
  REQUIRE(reviews.tcp_keepalive.has_value());
  CHECK(reviews.tcp_keepalive->probes == 3u);
  CHECK(reviews.tcp_keepalive->time == 7200u);
  CHECK(reviews.tcp_keepalive->interval == 75u);
}

TEST_CASE("listener codec: AUTO, HTTP1 and HTTP2 accepted, HTTP3 rejected with its field") {
  auto listener = [](const std::string& codec) {
    return FromJson<envoy::config::listener::v3::Listener>(R"({"name": "l",
      "address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}},
      "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "l", "codec_type": ")" + codec + R"(",
        "route_config": {"name": "r"},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
          "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})");
  };
  auto codec_of = [&](const std::string& codec) {
    auto parsed = config::ParseListener(listener(codec));
    REQUIRE(parsed.ok());
    return std::get<config::HttpChain>((*parsed)->chains.at(0).filter).codec;
  };
  CHECK(codec_of("AUTO") == config::HttpChain::Codec::kAuto);
  CHECK(codec_of("HTTP1") == config::HttpChain::Codec::kHttp1);
  CHECK(codec_of("HTTP2") == config::HttpChain::Codec::kHttp2);
  auto http3 = config::ParseListener(listener("HTTP3"));
  REQUIRE_FALSE(http3.ok());
  CHECK(http3.status().message() ==
        "filter_chains[0].filters[0].typed_config.codec_type: HTTP/3 is not supported (AUTO, HTTP1, HTTP2 are)");
}

TEST_CASE("listener connection limits: parsed with Envoy's defaults, unsupported ones rejected") {
  auto parse = [](const std::string& hcm_fields) {
    return config::ParseListener(FromJson<envoy::config::listener::v3::Listener>(R"({"name": "l",
      "address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}},
      "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "l", "route_config": {"name": "r"}, )" + hcm_fields + R"(
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
          "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})"));
  };
  auto chain = [](const auto& parsed) {
    return std::get<config::HttpChain>(parsed->chains.at(0).filter);
  };
  auto defaults = parse("");
  REQUIRE(defaults.ok());
  CHECK(chain(*defaults).max_connection_duration == std::chrono::milliseconds(0));
  CHECK(chain(*defaults).max_requests_per_connection == 0u);
  CHECK_FALSE(chain(*defaults).max_stream_duration);
  CHECK(chain(*defaults).drain_timeout == std::chrono::milliseconds(5000));
  auto set = parse(R"("drain_timeout": "0.25s", "common_http_protocol_options": {
      "max_connection_duration": "60s", "max_requests_per_connection": 100,
      "max_stream_duration": "0s", "headers_with_underscores_action": "ALLOW"},)");
  INFO(set.status().ToString());
  REQUIRE(set.ok());
  CHECK(chain(*set).max_connection_duration == std::chrono::seconds(60));
  CHECK(chain(*set).max_requests_per_connection == 100u);
  CHECK(chain(*set).max_stream_duration == std::chrono::milliseconds(0));
  CHECK(chain(*set).drain_timeout == std::chrono::milliseconds(250));
  const std::string prefix = "filter_chains[0].filters[0].typed_config.";
  auto error = [&](const std::string& fields) {
    auto parsed = parse(fields);
    return parsed.ok() ? std::string("accepted") : std::string(parsed.status().message());
  };
  CHECK(error(R"("drain_timeout": "-1s",)") == prefix + "drain_timeout: must not be negative");
  CHECK(error(R"("common_http_protocol_options": {"max_connection_duration": "-1s"},)") ==
        prefix + "common_http_protocol_options.max_connection_duration: must not be negative");
  CHECK(error(R"("common_http_protocol_options": {"max_headers_count": 50},)") ==
        prefix + "common_http_protocol_options.max_headers_count: not supported");
  CHECK(error(R"("common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},)") ==
        prefix + "common_http_protocol_options.headers_with_underscores_action: only ALLOW is supported");
}

TEST_CASE("config durations: listener and cluster timeouts beyond steady_clock's range are capped") {
  auto parsed = config::ParseListener(FromJson<envoy::config::listener::v3::Listener>(R"({"name": "l",
    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}},
    "listener_filters_timeout": "315576000000s",
    "filter_chains": [
      {"filter_chain_match": {"destination_port": 80}, "filters": [{"name": "hcm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "l", "common_http_protocol_options": {"idle_timeout": "315576000000s"},
        "route_config": {"name": "r"},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
          "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]},
      {"filters": [{"name": "tcp", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": "t", "cluster": "c", "idle_timeout": "315576000000s"}}]}]})"));
  INFO(parsed.status().ToString());
  REQUIRE(parsed.ok());
  CHECK((*parsed)->listener_filters_timeout == config::kMaxDuration);
  CHECK(std::get<config::HttpChain>((*parsed)->chains.at(0).filter).idle_timeout == config::kMaxDuration);
  CHECK(std::get<config::TcpProxyChain>((*parsed)->chains.at(1).filter).idle_timeout ==
        config::kMaxDuration);

  const config::ClusterConfig cluster = ClusterFrom(
      R"({"name": "c", "type": "STATIC", "connect_timeout": "315576000000s", )" + std::string(kOptions) +
      R"("common_http_protocol_options": {"idle_timeout": "315576000000s"},
         "explicit_http_config": {"http_protocol_options": {}}}},
         "outlier_detection": {"base_ejection_time": "315576000000s"}})");
  CHECK(cluster.connect_timeout == config::kMaxDuration);
  CHECK(cluster.idle_timeout == config::kMaxDuration);
  CHECK(cluster.outlier_detection->base_ejection_time == config::kMaxDuration);
  const auto now = std::chrono::steady_clock::now();
  CHECK(now + cluster.connect_timeout > now);
}

}  // namespace
}  // namespace meshpilot::sidecar
