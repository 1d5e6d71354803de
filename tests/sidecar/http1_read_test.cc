// ParseBuffered on its own; ReadHttp1 and Transport::Write over a real loopback connection:
// what is buffered is parsed before the socket is read, pipelined requests, a close in the
// middle of a head, body pieces (need_buffer), the deadline, writes larger than the socket
// buffer, WriteNow's partial writes, and ReadNow with ReadHttp1's reads under load.

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

#include "sidecar/http/http1_parser.h"
#include "sidecar/server/http1_read.h"
#include "sidecar/server/stream.h"
#include "sidecar/server/transport.h"

namespace meshpilot::sidecar::server {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

// A connected pair on loopback: `transport` is the side under test, `peer` a plain socket.
struct Connection {
  asio::io_context io;
  std::optional<Transport> transport;
  tcp::socket peer{io};

  Connection() {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    peer.connect(acceptor.local_endpoint());
    transport.emplace(acceptor.accept());
  }

  void Send(std::string_view bytes) { asio::write(peer, asio::buffer(bytes.data(), bytes.size())); }

  // Runs `task` on the io_context to its end.
  template <typename T>
  T Run(asio::awaitable<T> task) {
    std::future<T> result = asio::co_spawn(io, std::move(task), asio::use_future);
    io.run();
    io.restart();
    return result.get();
  }
};

TEST_CASE("ReadHttp1: pipelined requests come out of the buffer one by one") {
  Connection c;
  c.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: y\r\n\r\n");
  boost::beast::flat_buffer buffer;
  std::vector<std::string> paths;
  for (int i = 0; i < 2; ++i) {
    http::Http1Parser<true> parser;
    CHECK_FALSE(c.Run(ReadHttp1(*c.transport, buffer, parser, Http1ReadUntil::kHeader)));
    CHECK(parser.is_done());
    paths.emplace_back(parser.headers().GetOr(":path", ""));
  }
  CHECK(paths == std::vector<std::string>{"/a", "/b"});
  CHECK(buffer.size() == 0);
  // The peer closes between messages: the end of the stream, not an error in a message.
  c.peer.close();
  http::Http1Parser<true> parser;
  CHECK(c.Run(ReadHttp1(*c.transport, buffer, parser, Http1ReadUntil::kHeader)) ==
        bhttp::error::end_of_stream);
}

TEST_CASE("ReadHttp1: a close in the middle of a head is a partial message") {
  Connection c;
  c.Send("GET / HTTP/1.1\r\nHost: x\r\n");
  c.peer.shutdown(tcp::socket::shutdown_send);
  boost::beast::flat_buffer buffer;
  http::Http1Parser<true> parser;
  CHECK(c.Run(ReadHttp1(*c.transport, buffer, parser, Http1ReadUntil::kHeader)) ==
        bhttp::error::partial_message);
}

TEST_CASE("ReadHttp1: a body arrives a piece at a time, with need_buffer between pieces") {
  Connection c;
  const std::string body(3 * http::kBodyPiece / 2, 'b');
  c.Send("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  boost::beast::flat_buffer buffer;
  http::Http1Parser<false> parser;
  REQUIRE_FALSE(c.Run(ReadHttp1(*c.transport, buffer, parser, Http1ReadUntil::kHeader)));
  std::string got;
  int pieces = 0;
  while (!parser.is_done() && pieces < 10) {
    parser.BodyInto(got);
    const boost::system::error_code ec =
        c.Run(ReadHttp1(*c.transport, buffer, parser, Http1ReadUntil::kMessage));
    CHECK((!ec || ec == bhttp::error::need_buffer));
    ++pieces;
  }
  CHECK(got == body);
  CHECK(pieces == 2);
}

TEST_CASE("ReadHttp1: reads grow while a large body keeps filling them, and shrink when idle") {
  Connection c;
  // 1 MiB in the socket at once (a writer thread: more than the socket buffers hold).
  const std::string body(1 << 20, 'b');
  std::thread writer([&] {
    c.Send("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
           body);
  });
  boost::beast::flat_buffer buffer;
  http::Http1Parser<false> parser;
  REQUIRE_FALSE(c.Run(ReadHttp1(*c.transport, buffer, parser, Http1ReadUntil::kHeader)));
  CHECK(buffer.capacity() <= 1024);  // a head needs Beast's 512-byte first read, no more
  std::string got;
  size_t largest = 0;
  while (!parser.is_done() && got.size() <= body.size()) {
    parser.BodyInto(got);
    const boost::system::error_code ec =
        c.Run(ReadHttp1(*c.transport, buffer, parser, Http1ReadUntil::kMessage));
    REQUIRE((!ec || ec == bhttp::error::need_buffer));
    largest = std::max(largest, buffer.capacity());
  }
  writer.join();
  CHECK(got == body);
  // Beast's hint alone stays at 512 bytes while the parser drains the buffer.
  CHECK(largest >= http::kBodyPiece);
  CHECK(largest <= 2 * kMaxRead);
  ShrinkHttp1Buffer(buffer);
  CHECK(buffer.capacity() == 0);
}

TEST_CASE("ParseBuffered: parses only what is buffered, and says when it needs more") {
  boost::beast::flat_buffer buffer;
  auto put = [&](std::string_view bytes) {
    buffer.commit(asio::buffer_copy(buffer.prepare(bytes.size()),
                                    asio::buffer(bytes.data(), bytes.size())));
  };
  http::Http1Parser<false> parser;
  boost::system::error_code ec;
  put("HTTP/1.1 200 OK\r\nContent-Len");
  CHECK_FALSE(ParseBuffered(buffer, parser, Http1ReadUntil::kHeader, ec));
  CHECK_FALSE(ec);
  put("gth: 10\r\n\r\n0123");
  REQUIRE(ParseBuffered(buffer, parser, Http1ReadUntil::kHeader, ec));
  CHECK_FALSE(ec);
  CHECK(parser.status() == 200);
  std::string body;
  parser.BodyInto(body);
  CHECK_FALSE(ParseBuffered(buffer, parser, Http1ReadUntil::kMessage, ec));  // 4 of 10 bytes
  CHECK_FALSE(ec);
  CHECK(body == "0123");
  CHECK(buffer.size() == 0);
  put("456789");
  CHECK(ParseBuffered(buffer, parser, Http1ReadUntil::kMessage, ec));
  CHECK_FALSE(ec);
  CHECK(parser.is_done());
  CHECK(body == "0123456789");
  // A malformed chunk size is an error, at once.
  http::Http1Parser<false> chunked;
  put("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
  REQUIRE(ParseBuffered(buffer, chunked, Http1ReadUntil::kHeader, ec));
  chunked.BodyInto(body);
  CHECK(ParseBuffered(buffer, chunked, Http1ReadUntil::kMessage, ec));
  CHECK(ec);
}

TEST_CASE("ReadHttp1: a read still waiting at the deadline fails with timeout") {
  Connection c;
  boost::beast::flat_buffer buffer;
  http::Http1Parser<false> parser;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
  CHECK(c.Run(ReadHttp1(*c.transport, buffer, parser, Http1ReadUntil::kHeader, deadline)) ==
        boost::beast::error::timeout);
}

TEST_CASE("Transport::ReadNow: bytes waiting, none yet, and the peer's close") {
  Connection c;
  std::array<char, 64> bytes{};
  boost::system::error_code ec;
  CHECK(c.transport->ReadNow(asio::buffer(bytes), ec) == 0);
  CHECK(ec == asio::error::would_block);
  c.Send("hello");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ec = {};
  REQUIRE(c.transport->ReadNow(asio::buffer(bytes), ec) == 5);
  CHECK_FALSE(ec);
  CHECK(std::string_view(bytes.data(), 5) == "hello");
  c.peer.shutdown(tcp::socket::shutdown_send);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(c.transport->ReadNow(asio::buffer(bytes), ec) == 0);
  CHECK(ec == asio::error::eof);
}

// Under load (more than one exchange in flight on the thread) ReadHttp1 yields, then reads
// with ReadNow, and with Asio only if nothing came meanwhile.
TEST_CASE("ReadHttp1 under load: bytes already in, bytes that come later, and a close") {
  Connection c;
  const ExchangeCount one, two;
  REQUIRE(ExchangeCount::in_flight() > 1);
  boost::beast::flat_buffer buffer;
  {
    c.Send("GET /in HTTP/1.1\r\nHost: x\r\n\r\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    http::Http1Parser<true> parser;
    CHECK_FALSE(c.Run(ReadHttp1(*c.transport, buffer, parser, Http1ReadUntil::kHeader)));
    CHECK(parser.headers().GetOr(":path", "") == "/in");
  }
  {
    // Nothing is in when ReadNow tries: the read waits on the reactor for the bytes.
    std::thread later([&c] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      c.Send("GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
    });
    http::Http1Parser<true> parser;
    CHECK_FALSE(c.Run(ReadHttp1(*c.transport, buffer, parser, Http1ReadUntil::kHeader)));
    later.join();
    CHECK(parser.headers().GetOr(":path", "") == "/later");
  }
  {
    c.Send("GET /cut HTTP/1.1\r\nHo");
    c.peer.shutdown(tcp::socket::shutdown_send);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    http::Http1Parser<true> parser;
    CHECK(c.Run(ReadHttp1(*c.transport, buffer, parser, Http1ReadUntil::kHeader)) ==
          bhttp::error::partial_message);
  }
}

TEST_CASE("Transport::Write: more than the socket buffer takes, in many pieces, arrives whole") {
  Connection c;
  // 12 pieces (more than one sendmsg carries) of 1 MiB: the socket fills up, and the rest waits
  // for the reader.
  std::vector<std::string> pieces;
  std::vector<asio::const_buffer> buffers;
  for (char letter = 'a'; letter < 'a' + 12; ++letter) pieces.emplace_back(1 << 20, letter);
  for (const std::string& piece : pieces) buffers.push_back(asio::buffer(piece));
  std::string received(12 << 20, '\0');
  std::future<size_t> read = asio::async_read(c.peer, asio::buffer(received), asio::use_future);
  CHECK_FALSE(c.Run(c.transport->Write(buffers)));
  CHECK(read.get() == received.size());
  std::string expected;
  for (const std::string& piece : pieces) expected += piece;
  CHECK(received == expected);
}

TEST_CASE("Transport::WriteNow: sends what the socket takes at once, and Write goes on from there") {
  Connection c;
  // Nothing reads yet: the socket takes a part of 16 MiB, and WriteNow does not wait.
  const std::string a(4 << 20, 'a');
  const std::string b(12 << 20, 'b');
  const std::array<asio::const_buffer, 2> buffers{asio::buffer(a), asio::buffer(b)};
  size_t sent = 0;
  boost::system::error_code ec;
  CHECK_FALSE(c.transport->WriteNow(buffers, sent, ec));
  CHECK_FALSE(ec);
  CHECK(sent > 0);
  CHECK(sent < a.size() + b.size());
  // A second try sends nothing more while the reader is away, and reports no error.
  const size_t first = sent;
  CHECK_FALSE(c.transport->WriteNow(buffers, sent, ec));
  CHECK_FALSE(ec);
  CHECK(sent == first);
  // Write sends the rest, each byte once.
  std::string received(a.size() + b.size(), '\0');
  std::future<size_t> read = asio::async_read(c.peer, asio::buffer(received), asio::use_future);
  CHECK_FALSE(c.Run(c.transport->Write(buffers, sent)));
  CHECK(read.get() == received.size());
  CHECK(received == a + b);
  // A write that fits is done at once; nothing to write is done too.
  sent = 0;
  CHECK(c.transport->WriteNow(asio::buffer(a.data(), 100), sent, ec));
  CHECK(sent == 100);
  size_t none = 0;
  CHECK(c.transport->WriteNow(asio::const_buffer(), none, ec));
  CHECK_FALSE(ec);
  std::string small(100, '\0');
  asio::read(c.peer, asio::buffer(small));
  CHECK(small == a.substr(0, 100));
}

TEST_CASE("Transport::WriteNow: a peer that reset the connection is an error, not a wait") {
  Connection c;
  c.peer.set_option(asio::socket_base::linger(true, 0));
  c.peer.close();  // RST
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const std::string bytes(1000, 'x');
  size_t sent = 0;
  boost::system::error_code ec;
  // The first send may still be taken; one after the reset fails.
  for (int i = 0; i < 3 && !ec; ++i) {
    sent = 0;
    CHECK(c.transport->WriteNow(asio::buffer(bytes), sent, ec));
  }
  CHECK(ec);
}

}  // namespace
}  // namespace meshpilot::sidecar::server
