// cpprestsdk lives here alone: its headers and fmt (spdlog) do not compile together.
#include "controlplane/source/kube/api_client.h"

#include <cpprest/containerstream.h>
#include <cpprest/http_client.h>

#include <boost/asio/ssl.hpp>
#include <fstream>
#include <mutex>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace meshpilot::source {
namespace {

using web::http::client::http_client;
using web::http::client::http_client_config;

// Service-account tokens rotate (kubelet rewrites the file well before expiry): re-read the
// file this often, as client-go does.
constexpr std::chrono::seconds kTokenRefresh(60);

}  // namespace

class ApiClient::Impl {
 public:
  explicit Impl(ClusterConfig config) : config_(std::move(config)) {}

  std::unique_ptr<http_client> Client(std::chrono::seconds timeout) const {
    http_client_config client_config;
    client_config.set_timeout(timeout);
    client_config.set_validate_certificates(!config_.insecure_skip_tls_verify);
    const ClusterConfig& config = config_;
    client_config.set_ssl_context_callback([&config](boost::asio::ssl::context& context) {
      if (!config.ca_pem.empty()) {
        context.add_certificate_authority(boost::asio::buffer(config.ca_pem));
      }
      if (!config.client_cert_pem.empty()) {
        context.use_certificate_chain(boost::asio::buffer(config.client_cert_pem));
        context.use_private_key(boost::asio::buffer(config.client_key_pem),
                                boost::asio::ssl::context::pem);
      }
    });
    return std::make_unique<http_client>(utility::conversions::to_string_t(config_.server),
                                         client_config);
  }

  web::http::http_request Request(const std::string& method, const std::string& path) {
    web::http::http_request request(utility::conversions::to_string_t(method));
    request.set_request_uri(utility::conversions::to_string_t(path));
    request.headers().add(U("Accept"), U("application/json"));
    request.headers().add(U("User-Agent"), U("meshpilot"));
    if (std::string token = Token(); !token.empty()) {
      request.headers().add(U("Authorization"), utility::conversions::to_string_t("Bearer " + token));
    }
    return request;
  }

  std::string Token() {
    if (config_.token_file.empty()) return config_.token;
    std::lock_guard<std::mutex> lock(mu_);
    auto now = std::chrono::steady_clock::now();
    if (token_read_at_ == std::chrono::steady_clock::time_point() ||
        now - token_read_at_ >= kTokenRefresh) {
      std::ifstream file(config_.token_file);
      std::ostringstream content;
      content << file.rdbuf();
      std::string token = content.str();
      while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
      // A file caught mid-rewrite (empty) keeps the previous token.
      if (file && !token.empty()) token_ = std::move(token);
      token_read_at_ = now;
    }
    return token_;
  }

  pplx::cancellation_token CancelToken() {
    std::lock_guard<std::mutex> lock(mu_);
    return cancel_.get_token();
  }

  void Shutdown() {
    std::lock_guard<std::mutex> lock(mu_);
    cancel_.cancel();
  }

 private:
  const ClusterConfig config_;
  std::mutex mu_;
  pplx::cancellation_token_source cancel_;
  std::string token_;
  std::chrono::steady_clock::time_point token_read_at_;
};

ApiClient::ApiClient(ClusterConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}

ApiClient::~ApiClient() { Shutdown(); }

void ApiClient::Shutdown() { impl_->Shutdown(); }

absl::StatusOr<ApiClient::Response> ApiClient::Send(const std::string& method,
                                                    const std::string& path_and_query,
                                                    const std::string& body,
                                                    const std::string& content_type,
                                                    std::chrono::seconds timeout) {
  pplx::cancellation_token cancel = impl_->CancelToken();
  if (cancel.is_canceled()) return absl::CancelledError("the API client is shut down");
  try {
    std::unique_ptr<http_client> client = impl_->Client(timeout);
    web::http::http_request request = impl_->Request(method, path_and_query);
    if (!body.empty() || method != "GET") {
      request.set_body(body, utility::conversions::to_string_t(content_type));
    }
    web::http::http_response response = client->request(request, cancel).get();
    Response result;
    result.status = response.status_code();
    // Bytes as they came: the body is JSON, and extract_string would second-guess charsets.
    std::vector<unsigned char> bytes = response.extract_vector().get();
    result.body.assign(bytes.begin(), bytes.end());
    return result;
  } catch (const pplx::task_canceled&) {
    return absl::CancelledError("the API client is shut down");
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(method, " ", path_and_query, ": ", e.what()));
  }
}

absl::StatusOr<ApiClient::Response> ApiClient::Stream(
    const std::string& path_and_query, const std::function<void(const std::string&)>& on_line,
    std::chrono::seconds idle_timeout) {
  pplx::cancellation_token cancel = impl_->CancelToken();
  if (cancel.is_canceled()) return absl::CancelledError("the API client is shut down");
  try {
    // cpprestsdk restarts its timeout on every read, so this bounds silence, not the watch.
    std::unique_ptr<http_client> client = impl_->Client(idle_timeout);
    web::http::http_response response =
        client->request(impl_->Request("GET", path_and_query), cancel).get();
    Response result;
    result.status = response.status_code();
    if (result.status != 200) {
      std::vector<unsigned char> bytes = response.extract_vector().get();
      result.body.assign(bytes.begin(), bytes.end());
      return result;
    }
    concurrency::streams::istream body = response.body();
    while (!cancel.is_canceled()) {
      concurrency::streams::container_buffer<std::string> line;
      size_t length = body.read_line(line).get();
      if (length == 0 && body.is_eof()) break;
      if (!line.collection().empty()) on_line(line.collection());
    }
    if (cancel.is_canceled()) return absl::CancelledError("the API client is shut down");
    return result;
  } catch (const pplx::task_canceled&) {
    return absl::CancelledError("the API client is shut down");
  } catch (const std::exception& e) {
    if (cancel.is_canceled()) return absl::CancelledError("the API client is shut down");
    return absl::UnavailableError(absl::StrCat("GET ", path_and_query, ": ", e.what()));
  }
}

}  // namespace meshpilot::source
