#include "sidecar/router/headers.h"

#include <cstdio>
#include <string_view>
#include <vector>

#include <boost/beast/http/rfc7230.hpp>

namespace meshpilot::sidecar::router {

namespace http = boost::beast::http;

void ApplyHeaderMutations(const config::HeaderMutations& mutations, http::fields& headers) {
  for (const std::string& name : mutations.remove) headers.erase(name);
  for (const config::HeaderToAdd& header : mutations.add) {
    const bool exists = headers.find(header.key) != headers.end();
    switch (header.action) {
      case config::HeaderToAdd::Action::kAppendIfExistsOrAdd:
        headers.insert(header.key, header.value);
        break;
      case config::HeaderToAdd::Action::kAddIfAbsent:
        if (!exists) headers.insert(header.key, header.value);
        break;
      case config::HeaderToAdd::Action::kOverwriteIfExistsOrAdd:
        headers.set(header.key, header.value);
        break;
      case config::HeaderToAdd::Action::kOverwriteIfExists:
        if (exists) headers.set(header.key, header.value);
        break;
    }
  }
}

void StripHopByHop(http::fields& headers) {
  std::vector<std::string> named;
  auto range = headers.equal_range(http::field::connection);
  for (auto it = range.first; it != range.second; ++it) {
    for (auto token : http::token_list(it->value())) {
      std::string name(token.data(), token.size());
      if (!boost::beast::iequals(name, "close") && !boost::beast::iequals(name, "keep-alive")) {
        named.push_back(std::move(name));
      }
    }
  }
  for (const std::string& name : named) headers.erase(name);
  headers.erase(http::field::connection);
  headers.erase(http::field::keep_alive);
  headers.erase(http::field::proxy_connection);
  headers.erase(http::field::upgrade);
  headers.erase(http::field::te);
  headers.erase(http::field::trailer);
}

std::string NewRequestId(std::mt19937_64& rng) {
  uint64_t hi = rng();
  uint64_t lo = rng();
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  char buf[37];
  std::snprintf(buf, sizeof(buf), "%08x-%04x-%04x-%04x-%012llx",
                static_cast<unsigned>(hi >> 32), static_cast<unsigned>((hi >> 16) & 0xffff),
                static_cast<unsigned>(hi & 0xffff), static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return buf;
}

}  // namespace meshpilot::sidecar::router
