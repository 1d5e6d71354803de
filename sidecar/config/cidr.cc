#include "sidecar/config/cidr.h"

#include "absl/strings/str_cat.h"

namespace meshpilot::sidecar::config {
namespace {

std::array<unsigned char, 16> V6Bytes(const boost::asio::ip::address& ip) {
  if (ip.is_v4()) {
    return boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, ip.to_v4()).to_bytes();
  }
  return ip.to_v6().to_bytes();
}

bool IsV4Mapped(const std::array<unsigned char, 16>& bytes) {
  for (int i = 0; i < 10; ++i) {
    if (bytes[i] != 0) return false;
  }
  return bytes[10] == 0xff && bytes[11] == 0xff;
}

}  // namespace

bool Cidr::Contains(const boost::asio::ip::address& ip) const {
  const std::array<unsigned char, 16> bytes = V6Bytes(ip);
  unsigned left = prefix_len;
  for (size_t i = 0; i < bytes.size() && left > 0; ++i) {
    const unsigned n = left >= 8 ? 8 : left;
    const unsigned char mask = static_cast<unsigned char>(0xff << (8 - n));
    if ((bytes[i] & mask) != (address[i] & mask)) return false;
    left -= n;
  }
  return true;
}

unsigned Cidr::WrittenLength() const {
  return IsV4Mapped(address) && prefix_len >= 96 ? prefix_len - 96 : prefix_len;
}

absl::StatusOr<Cidr> ParseCidr(const envoy::config::core::v3::CidrRange& proto,
                               const std::string& field) {
  boost::system::error_code ec;
  auto ip = boost::asio::ip::make_address(proto.address_prefix(), ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".address_prefix: \"",
                                                   proto.address_prefix(),
                                                   "\" is not an IP address"));
  }
  const unsigned bits = ip.is_v4() ? 32 : 128;
  const unsigned length = proto.has_prefix_len() ? proto.prefix_len().value() : bits;
  if (length > bits) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".prefix_len: ", length, " is longer than the address (", bits, " bits)"));
  }
  Cidr cidr;
  cidr.address = V6Bytes(ip);
  cidr.prefix_len = ip.is_v4() ? length + 96 : length;
  return cidr;
}

}  // namespace meshpilot::sidecar::config
