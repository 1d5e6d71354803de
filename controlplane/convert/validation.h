#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "controlplane/convert/yaml_reader.h"

namespace meshpilot::convert {

// Istio's validation rules that more than one kind uses. Each returns InvalidArgument with a
// message meant to follow the field path.

// RE2 syntax (what Envoy runs), at most 1024 characters, as Istio requires.
absl::Status ValidateRegex(absl::string_view regex);
// An IPv4/IPv6 address, or a CIDR block when `allow_cidr`.
absl::Status ValidateIp(absl::string_view text, bool allow_cidr);
// A DNS-1123 label: lowercase alphanumerics and '-', at most 63 characters.
absl::Status ValidateDnsLabel(absl::string_view label);
// A host name whose first label may be a wildcard ("*.example.com", "*", "reviews").
absl::Status ValidateWildcardDomain(absl::string_view host);
// A request header to match on: a token, an HTTP/2 pseudo-header or a JWT claim route.
absl::Status ValidateHeaderMatchName(absl::string_view name);
// Fraction of traffic in percent: 0, or 0.0001..100.
absl::Status ValidatePercentage(double percent);

// Reads the `exportTo` list of an object in `namespace_`: ".", "*" or namespace names,
// without duplicates.
std::vector<std::string> ReadExportTo(MapReader& spec, absl::string_view namespace_);
// Reads a workload selector's label map: no empty keys, no wildcards.
std::map<std::string, std::string> ReadSelectorLabels(MapReader& selector, absl::string_view key);

}  // namespace meshpilot::convert
