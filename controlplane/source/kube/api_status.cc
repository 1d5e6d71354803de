#include "controlplane/source/kube/api_status.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace meshpilot::source {
namespace {

const char* ReasonPhrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "";
  }
}

}  // namespace

std::string ApiStatusMessage(const std::string& body) {
  nlohmann::json status = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (status.is_object() && status.contains("message") && status["message"].is_string()) {
    return status["message"].get<std::string>();
  }
  return body.substr(0, 200);
}

std::string DescribeRefusal(const std::string& method, const std::string& path,
                            const ApiClient::Response& response) {
  const char* phrase = ReasonPhrase(response.status);
  return absl::StrCat(method, " ", path, ": HTTP ", response.status, *phrase ? " " : "", phrase,
                      ": ", ApiStatusMessage(response.body));
}

}  // namespace meshpilot::source
