#include "sidecar/http/grpc.h"

#include <cstdio>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

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

std::string PercentDecodeGrpcMessage(std::string_view message) {
  auto hex = [](char c) { return absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10; };
  std::string out;
  out.reserve(message.size());
  for (size_t i = 0; i < message.size(); ++i) {
    if (message[i] == '%' && i + 2 < message.size() && absl::ascii_isxdigit(message[i + 1]) &&
        absl::ascii_isxdigit(message[i + 2])) {
      out.push_back(static_cast<char>(hex(message[i + 1]) * 16 + hex(message[i + 2])));
      i += 2;
    } else {
      out.push_back(message[i]);
    }
  }
  return out;
}

std::string GrpcFrame(std::string_view message) {
  const auto size = static_cast<uint32_t>(message.size());
  std::string frame;
  frame.reserve(5 + message.size());
  frame.push_back('\0');
  for (int shift : {24, 16, 8, 0}) frame.push_back(static_cast<char>((size >> shift) & 0xff));
  frame.append(message);
  return frame;
}

absl::StatusOr<std::optional<std::string_view>> GrpcMessageReader::Next() {
  const size_t available = buffer_.size() - offset_;
  size_t size = 0;
  if (available >= 5) {
    const auto* prefix = reinterpret_cast<const unsigned char*>(buffer_.data() + offset_);
    size = (size_t{prefix[1]} << 24) | (size_t{prefix[2]} << 16) | (size_t{prefix[3]} << 8) |
           size_t{prefix[4]};
    if (prefix[0] != 0) {
      return absl::InternalError("compressed gRPC message, but no grpc-encoding was asked for");
    }
    if (size > max_message_bytes_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "gRPC message of ", size, " bytes, larger than the limit of ", max_message_bytes_));
    }
    if (available >= 5 + size) {
      std::string_view message(buffer_.data() + offset_ + 5, size);
      offset_ += 5 + size;
      return message;
    }
  }
  // More must come: what was handed out is done with, so the buffer restarts at the next
  // message, with room for all of it once its length is known (one allocation, not many).
  buffer_.erase(0, offset_);
  offset_ = 0;
  if (size > 0) buffer_.reserve(5 + size);
  return std::nullopt;
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
