#pragma once

// An address block (Envoy's CidrRange), shared by RBAC rules and filter chain matches.

#include <array>
#include <string>

#include <boost/asio/ip/address.hpp>

#include "absl/status/statusor.h"
#include "envoy/config/core/v3/address.pb.h"

namespace meshpilot::sidecar::config {

// `address` and `prefix_len` over its IPv6 form (IPv4 as v4-mapped).
struct Cidr {
  std::array<unsigned char, 16> address{};
  unsigned prefix_len = 0;

  bool Contains(const boost::asio::ip::address& ip) const;
  // The prefix length as written (IPv4 blocks count 32 bits).
  unsigned WrittenLength() const;
};

// A CidrRange; errors name `field`. An unset prefix_len is the whole address.
absl::StatusOr<Cidr> ParseCidr(const envoy::config::core::v3::CidrRange& proto,
                               const std::string& field);

}  // namespace meshpilot::sidecar::config
