#include "sidecar/router/route_match.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "sidecar/upstream/load_balancer.h"

namespace meshpilot::sidecar::router {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// How well a host matched: 4 exact, 3 suffix, 2 prefix, 1 "*", 0 none; then longer patterns
// win, then the virtual host listed first.
struct DomainMatch {
  int tier = 0;
  size_t length = 0;
  size_t vhost = 0;
  bool operator>(const DomainMatch& o) const {
    if (tier != o.tier) return tier > o.tier;
    if (length != o.length) return length > o.length;
    return vhost < o.vhost;
  }
};

DomainMatch BestMatch(const config::VirtualHostIndex& index, std::string_view host) {
  if (auto it = index.exact.find(AV(host)); it != index.exact.end()) {
    return {4, host.size(), it->second};
  }
  // A wildcard never matches the empty string: the pattern must be shorter than the host.
  for (const auto& [length, patterns] : index.suffixes) {
    if (length >= host.size()) continue;
    if (auto it = patterns.find(AV(host.substr(host.size() - length))); it != patterns.end()) {
      return {3, length, it->second};
    }
  }
  for (const auto& [length, patterns] : index.prefixes) {
    if (length >= host.size()) continue;
    if (auto it = patterns.find(AV(host.substr(0, length))); it != patterns.end()) {
      return {2, length, it->second};
    }
  }
  if (index.any) return {1, 0, *index.any};
  return {};
}

std::string_view StripPort(std::string_view host) {
  size_t colon = host.rfind(':');
  if (colon == std::string_view::npos) return host;
  size_t bracket = host.rfind(']');
  if (bracket != std::string_view::npos && bracket > colon) return host;  // [v6] without port
  if (bracket == std::string_view::npos && host.find(':') != colon) return host;  // bare v6
  return host.substr(0, colon);
}

std::optional<std::string_view> QueryParam(std::string_view path_and_query, std::string_view name) {
  size_t q = path_and_query.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = path_and_query.substr(q + 1);
  if (size_t hash = query.find('#'); hash != std::string_view::npos) query = query.substr(0, hash);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    if (key == name) return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query = query.substr(amp + 1);
  }
  return std::nullopt;
}

bool PathMatches(const config::RouteMatch& match, std::string_view path_and_query) {
  std::string lowered;
  std::string_view full = path_and_query;
  if (!match.case_sensitive) {
    lowered = absl::AsciiStrToLower(AV(path_and_query));
    full = lowered;
  }
  std::string_view path = PathOnly(full);
  switch (match.kind) {
    case config::RouteMatch::PathKind::kPrefix:
      return full.starts_with(match.path);  // Envoy matches prefixes on the whole :path
    case config::RouteMatch::PathKind::kPath:
      return path == match.path;
    case config::RouteMatch::PathKind::kPathSeparatedPrefix:
      return path.starts_with(match.path) &&
             (path.size() == match.path.size() || path[match.path.size()] == '/');
    case config::RouteMatch::PathKind::kRegex:
      return re2::RE2::FullMatch(re2::StringPiece(path.data(), path.size()), *match.regex);
  }
  return false;
}

}  // namespace

std::string_view PathOnly(std::string_view path_and_query) {
  size_t end = path_and_query.find_first_of("?#");
  return end == std::string_view::npos ? path_and_query : path_and_query.substr(0, end);
}

bool HeaderMatches(const config::HeaderMatch& match, HeaderGetter headers) {
  std::optional<std::string_view> value = headers(match.name);
  if (!value && match.treat_missing_as_empty && match.value) value = std::string_view();
  bool result;
  if (!value) {
    result = !match.value && !match.present;
  } else {
    result = match.value ? match.value->Matches(*value) : match.present;
  }
  return match.invert ? !result : result;
}

const config::VirtualHost* SelectVirtualHost(const config::RouteTable& table,
                                             std::string_view host_in) {
  std::string lowered;
  std::string_view host = host_in;
  if (std::any_of(host.begin(), host.end(), absl::ascii_isupper)) {
    lowered = absl::AsciiStrToLower(AV(host_in));
    host = lowered;
  }
  // A Host with a port matches a domain with that port or one without a port.
  DomainMatch best = BestMatch(table.domains, host);
  if (std::string_view stripped = StripPort(host); best.tier < 4 && stripped.size() != host.size()) {
    if (DomainMatch without_port = BestMatch(table.domains, stripped); without_port > best) {
      best = without_port;
    }
  }
  return best.tier == 0 ? nullptr : &table.virtual_hosts[best.vhost];
}

const config::Route* SelectRoute(const config::VirtualHost& vhost, std::string_view path_and_query,
                                 HeaderGetter headers) {
  for (const config::Route& route : vhost.routes) {
    if (!PathMatches(route.match, path_and_query)) continue;
    bool ok = true;
    for (const config::HeaderMatch& header : route.match.headers) {
      if (!HeaderMatches(header, headers)) {
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    for (const config::QueryParamMatch& param : route.match.query_params) {
      std::optional<std::string_view> value = QueryParam(path_and_query, param.name);
      if (!value || (param.value && !param.value->Matches(*value))) {
        ok = false;
        break;
      }
    }
    if (ok) return &route;
  }
  return nullptr;
}

const config::WeightedCluster& PickWeighted(const std::vector<config::WeightedCluster>& clusters,
                                            uint64_t total_weight, uint64_t random) {
  uint64_t point = random % total_weight;
  for (const config::WeightedCluster& cluster : clusters) {
    if (point < cluster.weight) return cluster;
    point -= cluster.weight;
  }
  return clusters.back();
}

std::optional<uint64_t> RequestHash(const std::vector<config::HashPolicy>& policies,
                                    std::string_view path_and_query, HeaderGetter headers,
                                    std::string_view source_ip, std::string_view connection_key,
                                    std::vector<std::string>& set_cookies) {
  std::optional<uint64_t> hash;
  std::string generated;
  for (const config::HashPolicy& policy : policies) {
    std::optional<std::string_view> value;
    switch (policy.kind) {
      case config::HashPolicy::Kind::kHeader:
        value = headers(policy.name);
        break;
      case config::HashPolicy::Kind::kQueryParameter:
        value = QueryParam(path_and_query, policy.name);
        break;
      case config::HashPolicy::Kind::kSourceIp:
        value = source_ip;
        break;
      case config::HashPolicy::Kind::kCookie:
        if (std::optional<std::string_view> cookies = headers("cookie")) {
          std::string_view rest = *cookies;
          while (!rest.empty()) {
            size_t semi = rest.find(';');
            std::string_view pair = rest.substr(0, semi);
            while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
            size_t eq = pair.find('=');
            if (eq != std::string_view::npos && pair.substr(0, eq) == policy.name) {
              value = pair.substr(eq + 1);
              // A quoted value counts without its quotes (as Envoy's generated ones come).
              if (value->size() >= 2 && value->front() == '"' && value->back() == '"') {
                value = value->substr(1, value->size() - 2);
              }
              break;
            }
            if (semi == std::string_view::npos) break;
            rest = rest.substr(semi + 1);
          }
        }
        if ((!value || value->empty()) && policy.cookie_ttl) {
          generated = absl::StrCat(absl::Hex(upstream::Hash64(connection_key), absl::kZeroPad16));
          std::string cookie = absl::StrCat(policy.name, "=\"", generated, "\"");
          if (policy.cookie_ttl->count() != 0) {
            absl::StrAppend(&cookie, "; Max-Age=", policy.cookie_ttl->count());
          }
          if (!policy.cookie_path.empty()) absl::StrAppend(&cookie, "; Path=", policy.cookie_path);
          absl::StrAppend(&cookie, "; HttpOnly");
          set_cookies.push_back(std::move(cookie));
          value = generated;
        }
        break;
    }
    if (!value) continue;
    const uint64_t h = upstream::Hash64(*value);
    hash = hash ? ((*hash << 1) | (*hash >> 63)) ^ h : h;
    if (policy.terminal) break;
  }
  return hash;
}

// The length of the start of path that Envoy's prefix_rewrite replaces: the matched prefix, or
// the whole path for exact and regex matches (Istio sends rewrite.uri as prefix_rewrite there
// too).
static size_t RewrittenLength(const config::RouteMatch& match, std::string_view path) {
  if (match.kind == config::RouteMatch::PathKind::kPrefix ||
      match.kind == config::RouteMatch::PathKind::kPathSeparatedPrefix) {
    return std::min(match.path.size(), path.size());
  }
  return path.size();
}

std::string RewritePath(const config::RouteMatch& match, const config::RouteAction& action,
                        std::string_view path_and_query) {
  if (!action.prefix_rewrite.empty()) {
    std::string_view path = PathOnly(path_and_query);
    return absl::StrCat(action.prefix_rewrite,
                        AV(path_and_query.substr(RewrittenLength(match, path))));
  }
  if (action.regex_rewrite) {
    std::string_view path = PathOnly(path_and_query);
    std::string rewritten(path);
    re2::RE2::GlobalReplace(&rewritten, *action.regex_rewrite, action.regex_substitution);
    return absl::StrCat(rewritten, AV(path_and_query.substr(path.size())));
  }
  return std::string(path_and_query);
}

std::string RedirectLocation(const config::Redirect& redirect, const config::RouteMatch& match,
                             std::string_view scheme, std::string_view host,
                             std::string_view path_and_query) {
  std::string_view out_scheme = redirect.scheme.empty() ? scheme : redirect.scheme;
  std::string out_host(redirect.host.empty() ? StripPort(host) : redirect.host);
  if (redirect.port != 0) {
    absl::StrAppend(&out_host, ":", redirect.port);
  } else if (redirect.host.empty() && StripPort(host).size() != host.size() &&
             redirect.scheme.empty()) {
    out_host = std::string(host);  // keep the port the client used
  }
  std::string_view path = PathOnly(path_and_query);
  std::string_view query = path_and_query.substr(path.size());
  std::string out_path;
  if (!redirect.path.empty()) {
    out_path = redirect.path;
  } else if (!redirect.prefix_rewrite.empty()) {
    out_path = absl::StrCat(redirect.prefix_rewrite, AV(path.substr(RewrittenLength(match, path))));
  } else {
    out_path = std::string(path);
  }
  if (!redirect.strip_query && out_path.find('?') == std::string::npos) {
    absl::StrAppend(&out_path, AV(query));
  }
  return absl::StrCat(AV(out_scheme), "://", out_host, out_path);
}

}  // namespace meshpilot::sidecar::router
