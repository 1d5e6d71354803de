// http_echo_server: a real HTTP/1.1 backend for the demo (Boost.Beast, keep-alive). It answers
// every request with 200 and a JSON body naming itself and echoing what it received, so a
// client can tell which backend a request reached and what a proxy added on the way:
//
//   {"backend": "web-v1", "method": "GET", "target": "/hello", "headers": {"host": "...", ...}}
//
//   http_echo_server --port 0 --name web-v1 [--host 127.0.0.1]
//
// Prints "listening on HOST:PORT" (flushed) once it accepts; exits 0 on SIGTERM/SIGINT.

#include <iostream>
#include <string>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(int, port, 0, "port to listen on; 0 picks a free one (printed on stdout)");
ABSL_FLAG(std::string, host, "127.0.0.1", "address to listen on");
ABSL_FLAG(std::string, name, "web", "backend name returned in every response");

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

http::response<http::string_body> Answer(const http::request<http::string_body>& request,
                                         const std::string& name) {
  nlohmann::json headers = nlohmann::json::object();
  for (const auto& field : request) {
    headers[absl::AsciiStrToLower(std::string(field.name_string()))] = std::string(field.value());
  }
  nlohmann::json body = {{"backend", name},
                         {"method", std::string(request.method_string())},
                         {"target", std::string(request.target())},
                         {"headers", std::move(headers)}};
  http::response<http::string_body> response(http::status::ok, request.version());
  response.set(http::field::content_type, "application/json");
  response.body() = body.dump() + "\n";
  response.keep_alive(request.keep_alive());
  response.prepare_payload();
  return response;
}

asio::awaitable<void> Serve(tcp::socket socket, std::string name) {
  boost::beast::flat_buffer buffer;
  boost::system::error_code ec;
  for (;;) {
    http::request<http::string_body> request;
    co_await http::async_read(socket, buffer, request, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;  // closed by the client, or not HTTP
    http::response<http::string_body> response = Answer(request, name);
    co_await http::async_write(socket, response, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !response.keep_alive()) co_return;
  }
}

asio::awaitable<void> Accept(tcp::acceptor& acceptor, std::string name) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;
    asio::co_spawn(acceptor.get_executor(), Serve(std::move(socket), name), asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("HTTP/1.1 backend that answers with its --name and the request");
  absl::ParseCommandLine(argc, argv);
  const std::string name = absl::GetFlag(FLAGS_name);
  asio::io_context io(1);
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(absl::GetFlag(FLAGS_host), ec);
  if (ec) {
    std::cerr << "http_echo_server: --host " << absl::GetFlag(FLAGS_host) << ": " << ec.message()
              << std::endl;
    return 2;
  }
  tcp::acceptor acceptor(io);
  const tcp::endpoint endpoint(address, static_cast<uint16_t>(absl::GetFlag(FLAGS_port)));
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::cerr << "http_echo_server: cannot listen on " << endpoint << ": " << ec.message()
              << std::endl;
    return 1;
  }
  std::cout << "listening on " << acceptor.local_endpoint() << std::endl;

  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code&, int) {
    acceptor.close();
    io.stop();
  });
  asio::co_spawn(io, Accept(acceptor, name), asio::detached);
  io.run();
  std::cerr << "http_echo_server " << name << ": shutting down" << std::endl;
  return 0;
}
