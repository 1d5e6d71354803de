#include "sidecar/filters/tls_inspector.h"

#include <optional>

#include "absl/strings/ascii.h"

namespace meshpilot::sidecar::filters {
namespace {

using Result = TlsInspection::Result;

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHello = 1;
constexpr uint16_t kServerNameExtension = 0;
constexpr uint16_t kAlpnExtension = 16;
constexpr uint8_t kHostName = 0;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecordFragment = (1 << 14) + 2048;  // TLSCiphertext's limit

// Reads big-endian fields off a byte span; any read past its end fails and sticks.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> data) : data_(data) {}

  std::optional<uint32_t> Int(size_t bytes) {
    if (!Has(bytes)) return std::nullopt;
    uint32_t value = 0;
    for (size_t i = 0; i < bytes; ++i) value = (value << 8) | data_[offset_ + i];
    offset_ += bytes;
    return value;
  }
  // A field prefixed by its length in `length_bytes`.
  std::optional<std::span<const uint8_t>> Vector(size_t length_bytes) {
    std::optional<uint32_t> length = Int(length_bytes);
    if (!length || !Has(*length)) {
      ok_ = false;
      return std::nullopt;
    }
    auto out = data_.subspan(offset_, *length);
    offset_ += *length;
    return out;
  }
  bool Skip(size_t bytes) {
    if (!Has(bytes)) return false;
    offset_ += bytes;
    return true;
  }
  bool empty() const { return offset_ == data_.size(); }
  bool ok() const { return ok_; }

 private:
  bool Has(size_t bytes) {
    if (ok_ && data_.size() - offset_ >= bytes) return true;
    ok_ = false;
    return false;
  }
  std::span<const uint8_t> data_;
  size_t offset_ = 0;
  bool ok_ = true;
};

std::string Text(std::span<const uint8_t> bytes) { return std::string(bytes.begin(), bytes.end()); }

// server_name extension (RFC 6066 §3): the first host_name entry.
bool ReadServerName(std::span<const uint8_t> body, std::string& out) {
  Reader reader(body);
  auto list = reader.Vector(2);
  if (!list || !reader.empty()) return false;
  Reader names(*list);
  while (!names.empty()) {
    auto type = names.Int(1);
    auto name = names.Vector(2);
    if (!type || !name) return false;
    if (*type == kHostName && out.empty()) out = absl::AsciiStrToLower(Text(*name));
  }
  return true;
}

// application_layer_protocol_negotiation extension (RFC 7301 §3.1).
bool ReadAlpn(std::span<const uint8_t> body, std::vector<std::string>& out) {
  Reader reader(body);
  auto list = reader.Vector(2);
  if (!list || !reader.empty()) return false;
  Reader protocols(*list);
  while (!protocols.empty()) {
    auto protocol = protocols.Vector(1);
    if (!protocol || protocol->empty()) return false;
    out.push_back(Text(*protocol));
  }
  return true;
}

// The ClientHello body (RFC 8446 §4.1.2; TLS 1.0-1.2's has the same layout).
TlsInspection ReadClientHello(std::span<const uint8_t> body) {
  TlsInspection inspection;
  inspection.result = Result::kNotTls;
  Reader reader(body);
  if (!reader.Skip(2 + 32)) return inspection;  // legacy_version, random
  auto session_id = reader.Vector(1);
  auto cipher_suites = reader.Vector(2);
  auto compression = reader.Vector(1);
  if (!session_id || session_id->size() > 32 || !cipher_suites || cipher_suites->size() < 2 ||
      cipher_suites->size() % 2 != 0 || !compression || compression->empty()) {
    return inspection;
  }
  if (!reader.empty()) {
    auto extensions = reader.Vector(2);
    if (!extensions || !reader.empty()) return inspection;
    Reader list(*extensions);
    while (!list.empty()) {
      auto type = list.Int(2);
      auto data = list.Vector(2);
      if (!type || !data) return inspection;
      if (*type == kServerNameExtension && !ReadServerName(*data, inspection.server_name)) {
        return inspection;
      }
      if (*type == kAlpnExtension && !ReadAlpn(*data, inspection.alpn)) return inspection;
    }
  }
  inspection.result = Result::kClientHello;
  return inspection;
}

}  // namespace

TlsInspection InspectClientHello(std::span<const uint8_t> data) {
  TlsInspection need_more;
  TlsInspection not_tls;
  not_tls.result = Result::kNotTls;
  // The handshake message, reassembled from as many handshake records as it spans.
  std::vector<uint8_t> handshake;
  size_t offset = 0;
  for (;;) {
    if (data.size() - offset < kRecordHeader) {
      // Judge what is there already: a first byte that is no handshake record is not TLS.
      if (offset == 0 && !data.empty() && data[0] != kHandshakeRecord) return not_tls;
      if (offset == 0 && data.size() >= 2 && data[1] != 3) return not_tls;
      return need_more;
    }
    Reader header(data.subspan(offset, kRecordHeader));
    const uint32_t type = *header.Int(1);
    const uint32_t major = *header.Int(1);
    header.Skip(1);
    const uint32_t length = *header.Int(2);
    if (type != kHandshakeRecord || major != 3 || length == 0 || length > kMaxRecordFragment) {
      return not_tls;
    }
    offset += kRecordHeader;
    const size_t available = std::min<size_t>(length, data.size() - offset);
    handshake.insert(handshake.end(), data.begin() + offset, data.begin() + offset + available);
    if (handshake.size() >= 4) {
      if (handshake[0] != kClientHello) return not_tls;
      const size_t message = (size_t{handshake[1]} << 16) | (size_t{handshake[2]} << 8) | handshake[3];
      if (4 + message > kMaxClientHelloSize) {
        TlsInspection too_large;
        too_large.result = Result::kTooLarge;
        return too_large;
      }
      if (handshake.size() >= 4 + message) {
        return ReadClientHello(std::span<const uint8_t>(handshake).subspan(4, message));
      }
    }
    if (available < length) return need_more;
    offset += length;
  }
}

}  // namespace meshpilot::sidecar::filters
