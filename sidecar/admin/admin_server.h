#pragma once

// A small HTTP/1.1 server for the admin endpoints, on its own thread and event loop so admin
// traffic never shares a worker with the data path.

#include <memory>
#include <string>
#include <thread>
#include <vector>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/io_context.hpp>

#include "absl/status/statusor.h"
#include "sidecar/admin/admin_handler.h"

namespace meshpilot::sidecar::admin {

class AdminServer {
 public:
  explicit AdminServer(const AdminHandler& handler) : handler_(handler) {}
  ~AdminServer();

  // Listens on address:port (port 0: any); call before Start. Returns the bound port.
  absl::StatusOr<uint16_t> Listen(const std::string& address, uint16_t port);
  void Start();
  void Stop();
  boost::asio::io_context& io() { return io_; }

 private:
  const AdminHandler& handler_;
  boost::asio::io_context io_{1};
  std::thread thread_;
};

}  // namespace meshpilot::sidecar::admin
