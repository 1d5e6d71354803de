#include "sidecar/admin/admin_server.h"

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace meshpilot::sidecar::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

asio::awaitable<void> Serve(const AdminHandler& handler, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> request;
    stream.expires_after(std::chrono::seconds(60));
    boost::system::error_code ec;
    co_await http::async_read(stream, buffer, request, redirect_error(use_awaitable, ec));
    if (ec) break;
    AdminResponse answer = handler.Handle(std::string(request.method_string()),
                                          std::string(request.target()));
    http::response<http::string_body> response{static_cast<http::status>(answer.status),
                                               request.version()};
    response.set(http::field::content_type, answer.content_type);
    response.body() = std::move(answer.body);
    response.keep_alive(request.keep_alive());
    response.prepare_payload();
    co_await http::async_write(stream, response, redirect_error(use_awaitable, ec));
    if (ec || !request.keep_alive()) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> Accept(const AdminHandler& handler, std::shared_ptr<tcp::acceptor> acceptor) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket = co_await acceptor->async_accept(redirect_error(use_awaitable, ec));
    if (ec) {
      if (!acceptor->is_open()) co_return;
      continue;
    }
    asio::co_spawn(acceptor->get_executor(), Serve(handler, std::move(socket)), asio::detached);
  }
}

}  // namespace

AdminServer::~AdminServer() { Stop(); }

absl::StatusOr<uint16_t> AdminServer::Listen(const std::string& address, uint16_t port) {
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("admin address \"", address, "\": ", ec.message()));
  auto acceptor = std::make_shared<tcp::acceptor>(io_);
  tcp::endpoint endpoint(ip, port);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address, ":", port, ": ", ec.message()));
  }
  uint16_t bound = acceptor->local_endpoint().port();
  asio::co_spawn(io_, Accept(handler_, acceptor), asio::detached);
  return bound;
}

void AdminServer::Start() {
  thread_ = std::thread([this] { io_.run(); });
}

void AdminServer::Stop() {
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace meshpilot::sidecar::admin
