#include "sidecar/router/headers.h"

#include <unistd.h>

#include <algorithm>
#include <string_view>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sidecar/upstream/load_balancer.h"

namespace meshpilot::sidecar::router {

namespace {

const std::string& Hostname() {
  static const std::string* const kHostname = [] {
    char name[256] = {};
    return new std::string(gethostname(name, sizeof(name) - 1) == 0 ? name : "");
  }();
  return *kHostname;
}

}  // namespace

std::string FormatHeaderValue(const std::vector<config::HeaderValuePart>& format,
                              const HeaderValueContext& context) {
  using Kind = config::HeaderValuePart::Kind;
  std::string out;
  for (const config::HeaderValuePart& part : format) {
    switch (part.kind) {
      case Kind::kLiteral:
        out += part.text;
        break;
      case Kind::kDownstreamRemoteAddress:
        out += upstream::AddressString(context.downstream_remote);
        break;
      case Kind::kDownstreamRemoteAddressWithoutPort:
        out += context.downstream_remote.address().to_string();
        break;
      case Kind::kDownstreamRemotePort:
        absl::StrAppend(&out, context.downstream_remote.port());
        break;
      case Kind::kDownstreamLocalAddress:
        out += upstream::AddressString(context.downstream_local);
        break;
      case Kind::kDownstreamLocalAddressWithoutPort:
        out += context.downstream_local.address().to_string();
        break;
      case Kind::kDownstreamLocalPort:
        absl::StrAppend(&out, context.downstream_local.port());
        break;
      case Kind::kUpstreamCluster:
        out += context.upstream_cluster;
        break;
      case Kind::kProtocol:
        out += context.protocol;
        break;
      case Kind::kHostname:
        out += Hostname();
        break;
      case Kind::kStartTime:
        out += absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromChrono(context.start_time),
                                absl::UTCTimeZone());
        break;
      case Kind::kRequestHeader:
        if (context.request != nullptr) {
          if (auto value = context.request->Get(part.text)) {
            out += value->substr(0, part.max_length);
          }
        }
        break;
    }
  }
  return out;
}

void ApplyHeaderMutations(const config::HeaderMutations& mutations, http::HeaderMap& headers,
                          const HeaderValueContext* context) {
  for (const std::string& name : mutations.remove) headers.Remove(name);
  for (const config::HeaderToAdd& header : mutations.add) {
    std::string formatted;
    if (!header.format.empty()) {
      if (context == nullptr) continue;
      formatted = FormatHeaderValue(header.format, *context);
      if (formatted.empty()) continue;
    }
    const std::string& value = header.format.empty() ? header.value : formatted;
    const bool exists = headers.Has(absl::AsciiStrToLower(header.key));
    switch (header.action) {
      case config::HeaderToAdd::Action::kAppendIfExistsOrAdd:
        headers.Add(header.key, value);
        break;
      case config::HeaderToAdd::Action::kAddIfAbsent:
        if (!exists) headers.Add(header.key, value);
        break;
      case config::HeaderToAdd::Action::kOverwriteIfExistsOrAdd:
        headers.Set(header.key, value);
        break;
      case config::HeaderToAdd::Action::kOverwriteIfExists:
        if (exists) headers.Set(header.key, value);
        break;
    }
  }
}

void StripHopByHop(http::HeaderMap& headers) {
  // Names the Connection header lists go too (except its own close / keep-alive options).
  absl::InlinedVector<std::string, 2> named;
  for (const auto& [name, value] : headers.entries()) {
    if (name != "connection") continue;
    const absl::string_view options(value.data(), value.size());
    // The usual value names no header: nothing to split.
    if (absl::EqualsIgnoreCase(options, "keep-alive") || absl::EqualsIgnoreCase(options, "close")) {
      continue;
    }
    for (absl::string_view token : absl::StrSplit(options, ',', absl::SkipWhitespace())) {
      token = absl::StripAsciiWhitespace(token);
      if (absl::EqualsIgnoreCase(token, "close") || absl::EqualsIgnoreCase(token, "keep-alive")) {
        continue;
      }
      named.push_back(absl::AsciiStrToLower(token));
    }
  }
  // Stored names are lower case; most are none of these, which their length tells.
  headers.RemoveIf([&named](const http::HeaderMap::Entry& entry) {
    const std::string_view name = entry.first;
    switch (name.size()) {
      case 2:
        if (name == "te") {
          const absl::string_view value(entry.second.data(), entry.second.size());
          return !absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(value), "trailers");
        }
        break;
      case 7:
        if (name == "upgrade" || name == "trailer") return true;
        break;
      case 10:
        if (name == "connection" || name == "keep-alive") return true;
        break;
      case 16:
        if (name == "proxy-connection") return true;
        break;
      case 17:
        if (name == "transfer-encoding") return true;
        break;
      default:
        break;
    }
    return !named.empty() && std::find(named.begin(), named.end(), name) != named.end();
  });
}

RequestId NewRequestId(std::mt19937_64& rng) {
  uint64_t hi = rng();
  uint64_t lo = rng();
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  // hi's 16 hex digits then lo's, as 8-4-4-4-12, written directly: this runs for every
  // request.
  static constexpr char kHex[] = "0123456789abcdef";
  RequestId id;
  char* out = id.text.data();
  auto digits = [&out](uint64_t word, int first, int count) {
    for (int digit = first; digit < first + count; ++digit) {
      *out++ = kHex[(word >> (60 - 4 * digit)) & 0xf];
    }
  };
  digits(hi, 0, 8);
  *out++ = '-';
  digits(hi, 8, 4);
  *out++ = '-';
  digits(hi, 12, 4);
  *out++ = '-';
  digits(lo, 0, 4);
  *out++ = '-';
  digits(lo, 4, 12);
  return id;
}

std::string ShadowHost(std::string_view host) {
  // A port follows the last ':' unless that is inside an IPv6 literal ("[::1]").
  const size_t colon = host.rfind(':');
  const size_t bracket = host.rfind(']');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    return absl::StrCat(absl::string_view(host.data(), colon), "-shadow",
                        absl::string_view(host.data() + colon, host.size() - colon));
  }
  return absl::StrCat(absl::string_view(host.data(), host.size()), "-shadow");
}

}  // namespace meshpilot::sidecar::router
