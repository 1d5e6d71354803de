#include "sidecar/http/grpc.h"

#include <cstdio>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

namespace meshpilot::sidecar::http {

bool IsGrpc(const HeaderMap& headers) {
  auto type = headers.Get("content-type");
  if (!type) return false;
  absl::string_view value(type->data(), type->size());
  if (!absl::StartsWithIgnoreCase(value, "application/grpc")) return false;
  // "application/grpc-web" is another protocol.
  return value.size() == 16 || value[16] == '+' || value[16] == ';';
}

GrpcStatus GrpcStatusForHttp(unsigned http_status) {
  switch (http_status) {
    case 400:
      return GrpcStatus::kInternal;
    case 401:
      return GrpcStatus::kUnauthenticated;
    case 403:
      return GrpcStatus::kPermissionDenied;
    case 404:
      return GrpcStatus::kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504:  // the router's upstream timeout too, as Envoy (Istio users see UNAVAILABLE)
      return GrpcStatus::kUnavailable;
    default:
      return GrpcStatus::kUnknown;
  }
}

std::optional<uint32_t> GrpcStatusOf(const HeaderMap& headers) {
  auto value = headers.Get("grpc-status");
  uint32_t status = 0;
  if (!value || !absl::SimpleAtoi(absl::string_view(value->data(), value->size()), &status)) {
    return std::nullopt;
  }
  return status;
}

std::optional<std::chrono::milliseconds> GrpcTimeout(const HeaderMap& headers) {
  auto header = headers.Get("grpc-timeout");
  if (!header || header->size() < 2 || header->size() > 9) return std::nullopt;
  const absl::string_view value(header->data(), header->size() - 1);
  uint64_t n = 0;
  if (!absl::c_all_of(value, absl::ascii_isdigit) || !absl::SimpleAtoi(value, &n)) {
    return std::nullopt;
  }
  auto ceil_ms = [](auto d) { return std::chrono::ceil<std::chrono::milliseconds>(d); };
  switch (header->back()) {
    case 'H':
      return std::chrono::hours(n);
    case 'M':
      return std::chrono::minutes(n);
    case 'S':
      return std::chrono::seconds(n);
    case 'm':
      return std::chrono::milliseconds(n);
    case 'u':
      return ceil_ms(std::chrono::microseconds(n));
    case 'n':
      return ceil_ms(std::chrono::nanoseconds(n));
    default:
      return std::nullopt;
  }
}

std::string PercentEncodeGrpcMessage(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  for (unsigned char c : message) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      char escaped[4];
      std::snprintf(escaped, sizeof(escaped), "%%%02X", c);
      out.append(escaped);
    }
  }
  return out;
}

HeaderMap GrpcLocalReplyHeaders(unsigned http_status, std::string_view message,
                                std::optional<uint32_t> grpc_status) {
  const uint32_t status =
      grpc_status.value_or(static_cast<uint32_t>(GrpcStatusForHttp(http_status)));
  HeaderMap headers{{":status", "200"}, {"content-type", "application/grpc"},
                    {"grpc-status", std::to_string(status)}};
  if (!message.empty()) headers.Add("grpc-message", PercentEncodeGrpcMessage(message));
  return headers;
}

}  // namespace meshpilot::sidecar::http
