#include "controlplane/convert/validation.h"

#include <arpa/inet.h>

#include <string>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "re2/re2.h"

namespace meshpilot::convert {
namespace {

absl::Status Invalid(absl::string_view message) { return absl::InvalidArgumentError(message); }

bool IsLabelChar(char c) { return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-'; }

bool IsDnsLabel(absl::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  for (char c : label) {
    if (!IsLabelChar(c)) return false;
  }
  return true;
}

// RFC 7230 token characters.
bool IsTokenChar(char c) {
  return absl::ascii_isalnum(c) || absl::string_view("!#$%&'*+-.^_`|~").find(c) !=
                                       absl::string_view::npos;
}

}  // namespace

absl::Status ValidateRegex(absl::string_view regex) {
  if (regex.empty()) return Invalid("regex must not be empty");
  // Envoy bounds RE2 program size; Istio approximates that bound by the pattern's length.
  if (regex.size() > 1024) return Invalid("regex is too large, max length allowed is 1024");
  RE2::Options options;
  options.set_log_errors(false);
  RE2 re(re2::StringPiece(regex.data(), regex.size()), options);
  if (!re.ok()) {
    return Invalid(absl::StrCat("invalid regex \"", regex, "\": ", re.error(),
                                " (Istio uses RE2 syntax)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateIp(absl::string_view text, bool allow_cidr) {
  std::string address(text);
  absl::string_view prefix;
  if (size_t slash = address.find('/'); slash != std::string::npos && allow_cidr) {
    prefix = text.substr(slash + 1);
    address.resize(slash);
  }
  unsigned char buffer[sizeof(struct in6_addr)];
  int max_prefix = 0;
  if (inet_pton(AF_INET, address.c_str(), buffer) == 1) {
    max_prefix = 32;
  } else if (inet_pton(AF_INET6, address.c_str(), buffer) == 1) {
    max_prefix = 128;
  } else {
    return Invalid(absl::StrCat("\"", text, "\" is not a valid IP",
                                allow_cidr ? " address or CIDR block" : " address"));
  }
  int bits = 0;
  if (!prefix.empty() || absl::EndsWith(text, "/")) {
    if (!absl::SimpleAtoi(prefix, &bits) || bits < 0 || bits > max_prefix) {
      return Invalid(absl::StrCat("\"", text, "\" has an invalid prefix length"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateDnsLabel(absl::string_view label) {
  if (!IsDnsLabel(label)) {
    return Invalid(absl::StrCat("\"", label,
                                "\" is not a DNS-1123 label (lowercase alphanumerics and '-', "
                                "at most 63 characters)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateWildcardDomain(absl::string_view host) {
  if (host.empty()) return Invalid("host must not be empty");
  if (host.size() > 255) return Invalid("host is longer than 255 characters");
  std::vector<absl::string_view> labels = absl::StrSplit(host, '.');
  if (labels.size() > 1 && labels.back().empty()) labels.pop_back();  // FQDN with a root dot
  for (size_t i = 0; i < labels.size(); ++i) {
    absl::string_view label = labels[i];
    // Only the first label may carry a wildcard: "*", "*foo" or "*-foo".
    if (i == 0 && absl::StartsWith(label, "*")) {
      label.remove_prefix(1);
      if (label.empty()) continue;
      if (label.front() == '-') label.remove_prefix(1);
    }
    if (!IsDnsLabel(label)) {
      return Invalid(absl::StrCat("host \"", host, "\" is invalid (label \"", labels[i],
                                  "\" is not a DNS-1123 label)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateHeaderMatchName(absl::string_view name) {
  static constexpr absl::string_view kPseudoHeaders[] = {":method", ":scheme", ":authority",
                                                         ":path", ":status"};
  if (name.empty()) return Invalid("header name must not be empty");
  if (absl::c_linear_search(kPseudoHeaders, name) ||
      absl::StartsWith(name, "@request.auth.claims")) {
    return absl::OkStatus();
  }
  for (char c : name) {
    if (!IsTokenChar(c)) return Invalid(absl::StrCat("\"", name, "\" is not a valid header name"));
  }
  return absl::OkStatus();
}

absl::Status ValidatePercentage(double percent) {
  if (percent < 0 || percent > 100 || (percent > 0 && percent < 0.0001)) {
    return Invalid(absl::StrCat("percentage ", percent, " is neither 0 nor in 0.0001..100"));
  }
  return absl::OkStatus();
}

std::vector<std::string> ReadExportTo(MapReader& spec, absl::string_view namespace_) {
  std::vector<std::string> export_to = spec.StringList("exportTo");
  absl::flat_hash_set<std::string> seen;
  for (size_t i = 0; i < export_to.size(); ++i) {
    const std::string& entry = export_to[i];
    // "." is this namespace, so "." next to the namespace's own name is a duplicate too.
    std::string key = entry == "." ? std::string(namespace_) : entry;
    if (entry != "*" && entry != ".") {
      if (!ValidateDnsLabel(entry).ok()) {
        spec.FieldError(absl::StrCat("exportTo[", i, "]"),
                        "must be \".\", \"*\" or a namespace name");
        continue;
      }
    }
    if (!seen.insert(key).second) {
      spec.FieldError(absl::StrCat("exportTo[", i, "]"), absl::StrCat("duplicate entry ", entry));
    }
  }
  if (seen.contains("*") && export_to.size() > 1) {
    spec.FieldError("exportTo", "cannot have both public (*) and non-public values");
  }
  return export_to;
}

std::map<std::string, std::string> ReadSelectorLabels(MapReader& selector, absl::string_view key) {
  std::map<std::string, std::string> labels = selector.StringMap(key);
  for (const auto& [name, value] : labels) {
    if (name.empty()) selector.FieldError(key, "empty label keys are not supported");
    if (absl::StrContains(name, '*') || absl::StrContains(value, '*')) {
      selector.FieldError(absl::StrCat(key, "[", name, "]"), "wildcards are not supported");
    }
  }
  return labels;
}

}  // namespace meshpilot::convert
