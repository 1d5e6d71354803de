#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/source/kube/cluster_config.h"

namespace meshpilot::source {

// One request to the API server and its answer: the seam where the status writer meets the
// network, so that it can be tested against a fake server.
class ApiSender {
 public:
  struct Response {
    int status = 0;
    std::string body;  // for ApiClient::Stream(): the body of a non-200 answer only
  };
  virtual ~ApiSender() = default;
  // `path_and_query` relative to the server ("/api/v1/pods?limit=500"). An error status only
  // when there is no HTTP answer (connection, TLS, timeout, shutdown).
  virtual absl::StatusOr<Response> Send(const std::string& method,
                                        const std::string& path_and_query,
                                        const std::string& body, const std::string& content_type,
                                        std::chrono::seconds timeout) = 0;
};

// An HTTP client of one Kubernetes API server (cpprestsdk inside; its headers stay out of
// this one, so that callers may log with spdlog). Thread-safe: informers share one client,
// each request on its own connection from cpprestsdk's pool. Never throws.
class ApiClient : public ApiSender {
 public:
  explicit ApiClient(ClusterConfig config);
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;
  ~ApiClient() override;

  absl::StatusOr<Response> Send(const std::string& method, const std::string& path_and_query,
                                const std::string& body, const std::string& content_type,
                                std::chrono::seconds timeout) override;
  absl::StatusOr<Response> Get(const std::string& path_and_query) {
    return Send("GET", path_and_query, "", "application/json", std::chrono::seconds(30));
  }

  // A long request whose body is a stream of lines (a watch): `on_line` gets every line as it
  // arrives, until the server ends the body (OK, status 200), the connection fails or times
  // out after `idle_timeout` without data (an error), or Shutdown() (Cancelled).
  absl::StatusOr<Response> Stream(const std::string& path_and_query,
                                  const std::function<void(const std::string&)>& on_line,
                                  std::chrono::seconds idle_timeout);

  // Aborts every request in flight and fails all later ones. Idempotent.
  void Shutdown();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshpilot::source
