#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "controlplane/debug/debug_handler.h"

namespace web::http::experimental::listener {
class http_listener;
}

namespace meshpilot::debug {

// Serves a DebugHandler over HTTP with cpprestsdk (port 15014 by default). No logging in
// its .cc: cpprest's headers and fmt do not mix in one translation unit.
class HttpServer {
 public:
  explicit HttpServer(const DebugHandler& handler);
  ~HttpServer();

  absl::Status Start(const std::string& host, int port);
  void Stop();

 private:
  const DebugHandler& handler_;
  std::unique_ptr<web::http::experimental::listener::http_listener> listener_;
};

}  // namespace meshpilot::debug
