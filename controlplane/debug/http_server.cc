#include "controlplane/debug/http_server.h"

#include <cpprest/http_listener.h>

#include "absl/strings/str_cat.h"

namespace meshpilot::debug {

using web::http::http_request;
using web::http::experimental::listener::http_listener;

HttpServer::HttpServer(const DebugHandler& handler) : handler_(handler) {}

HttpServer::~HttpServer() { Stop(); }

absl::Status HttpServer::Start(const std::string& host, int port) {
  std::string url = absl::StrCat("http://", host, ":", port);
  try {
    listener_ = std::make_unique<http_listener>(url);
    listener_->support(web::http::methods::GET, [this](http_request request) {
      std::map<std::string, std::string> query;
      for (const auto& [key, value] :
           web::uri::split_query(web::uri::decode(request.request_uri().query()))) {
        query[key] = value;
      }
      DebugResponse response = handler_.Handle(request.relative_uri().path(), query);
      request.reply(response.status, response.body, response.content_type)
          .then([](pplx::task<void> sent) {
            try {
              sent.get();
            } catch (const std::exception&) {
              // The client went away before the reply was sent: nothing to do.
            }
          });
    });
    listener_->open().wait();
  } catch (const std::exception& e) {
    listener_.reset();
    return absl::UnavailableError(absl::StrCat("debug server on ", url, ": ", e.what()));
  }
  return absl::OkStatus();
}

void HttpServer::Stop() {
  if (listener_ == nullptr) return;
  try {
    listener_->close().wait();
  } catch (const std::exception&) {
    // Closing a listener whose connections already failed: it is closed either way.
  }
  listener_.reset();
}

}  // namespace meshpilot::debug
