#pragma once

// What the data path needs to know about gRPC: recognising a gRPC request, its status in
// response headers or trailers, and Envoy's local replies to it (HTTP 200,
// content-type application/grpc, grpc-status and grpc-message in a trailers-only response).
// And what the ADS client needs to speak it: length-prefixed messages.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

#include "sidecar/http/header_map.h"

namespace meshpilot::sidecar::http {

// gRPC's status codes (google.rpc.Code) that the proxy itself produces or reads.
enum class GrpcStatus : uint32_t {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kUnauthenticated = 16,
};

// content-type application/grpc, application/grpc+proto, application/grpc;...
bool IsGrpc(const HeaderMap& headers);

// The grpc-status a local reply with this HTTP status carries, as Envoy maps them:
// 400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED,
// 429/502/503/504 UNAVAILABLE (504: the router's upstream timeout), else UNKNOWN.
GrpcStatus GrpcStatusForHttp(unsigned http_status);

// grpc-status of headers (a trailers-only response) or trailers; none if absent or malformed.
std::optional<uint32_t> GrpcStatusOf(const HeaderMap& headers);

// The headers of a trailers-only local reply to a gRPC request. grpc-message is
// percent-encoded as the gRPC HTTP/2 protocol asks.
HeaderMap GrpcLocalReplyHeaders(unsigned http_status, std::string_view message,
                                std::optional<uint32_t> grpc_status = std::nullopt);

// The request's grpc-timeout ("TimeoutValue TimeoutUnit": up to 8 digits and one of H M S m u
// n), sub-millisecond units rounded up, as Envoy reads it; none if absent or malformed.
std::optional<std::chrono::milliseconds> GrpcTimeout(const HeaderMap& headers);

std::string PercentEncodeGrpcMessage(std::string_view message);
// grpc-message as received: %XX sequences decoded, anything malformed kept as it is.
std::string PercentDecodeGrpcMessage(std::string_view message);

// One uncompressed gRPC message on the wire: flag 0, its length (4 bytes, big-endian), itself.
std::string GrpcFrame(std::string_view message);

// Cuts received bytes into gRPC messages. A message's length is checked from its prefix,
// before any of it is buffered beyond what arrived.
class GrpcMessageReader {
 public:
  explicit GrpcMessageReader(size_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

  // Received bytes go here (after Next() returned none).
  std::string& buffer() { return buffer_; }
  // The next whole message, valid until the next call; none until more bytes arrive.
  // RESOURCE_EXHAUSTED if it is larger than the limit, INTERNAL if it is compressed (no
  // grpc-encoding was asked for).
  absl::StatusOr<std::optional<std::string_view>> Next();

 private:
  size_t max_message_bytes_;
  std::string buffer_;
  size_t offset_ = 0;  // where the next message starts
};

}  // namespace meshpilot::sidecar::http
